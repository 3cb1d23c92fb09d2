//! Ages as `kubectl get` prints them.

use chrono::TimeDelta;

/// `45s`, `5m`, `2h`, `3d` (whole units, rounded down); `0s` for a negative age (a clock
/// behind the writer's).
pub fn short_age(age: TimeDelta) -> String {
    let s = age.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let cases = [
            (-5, "0s"),
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3_599, "59m"),
            (7_200, "2h"),
            (86_399, "23h"),
            (3 * 86_400 + 5, "3d"),
        ];
        for (secs, want) in cases {
            assert_eq!(short_age(TimeDelta::seconds(secs)), want, "{secs}");
        }
    }
}
