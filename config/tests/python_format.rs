//! Byte-exact encoding against fixtures written by CPython's `json.dumps` with the
//! Python tools' options (see fixtures/README.md).

use std::path::Path;

use sdp_config::json::to_python_string;

#[test]
fn every_fixture_re_encodes_to_the_same_bytes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let python = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&python).unwrap();
        let ours = to_python_string(&value);
        if let Some((i, (a, b))) = ours
            .lines()
            .zip(python.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
        {
            panic!(
                "fixture {} differs at line {}: ours {a:?}, python {b:?}",
                path.display(),
                i + 1
            );
        }
        assert_eq!(ours, python, "fixture {}", path.display());
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} fixtures found");
}

#[test]
fn entities_written_by_us_match_the_python_fixtures() {
    use sdp_config::entity::{Deployment, ProcessingBlock, WorkflowRef};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let pb = ProcessingBlock::new(
        "realtime-20191121-0000",
        WorkflowRef::parse_spec("realtime:testdask:0.1.0").unwrap(),
    );
    assert_eq!(
        pb.to_json(),
        std::fs::read_to_string(dir.join("processing_block_2019.json")).unwrap()
    );
    let seed = std::fs::read_to_string(dir.join("seed_dask_deployment.json")).unwrap();
    let d = Deployment::parse(&seed, Some("realtime-20191121-0000-dask")).unwrap();
    assert_eq!(d.to_json(), seed);
}
