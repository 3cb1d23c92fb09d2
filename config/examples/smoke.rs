//! Smoke run of the library against an etcd at SDP_CONFIG_* (developer aid).
use sdp_config::{Config, ConnectionSettings, WatchEvent};
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let s = ConnectionSettings::from_env()?.with_prefix("/smoke");
    let db = Config::connect(&s).await?;
    let mut w = db.watch("/c/", 0, None)?;
    println!("listed: {:?}", w.next().await);
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                db.transact(|t| {
                    Box::pin(async move {
                        let n: i64 = t.get("/c/n").await?.map_or(0, |v| v.parse().unwrap_or(0));
                        t.put("/c/n", &(n + 1).to_string())?;
                        Ok(())
                    })
                })
                .await?;
            }
            Ok::<_, sdp_config::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let v = db
        .transact(|t| Box::pin(async move { t.get("/c/n").await }))
        .await?;
    println!(
        "counter = {v:?}, conflicts = {}",
        db.stats()
            .conflicts
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    let mut n = 0;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), w.next()).await {
        if let WatchEvent::Put(_) = ev {
            n += 1
        }
    }
    println!("watch saw {n} puts");
    let e = db.election("smoke");
    let cancel = tokio_util::sync::CancellationToken::new();
    let l = e.campaign("me", Duration::from_secs(3), &cancel).await?;
    println!("leader = {:?}", e.leader().await?);
    let mut t = db.txn();
    t.require(&l.guard());
    t.put("/c/guarded", "1")?;
    println!("guarded commit: {:?}", t.commit().await.map(|c| c.revision));
    l.resign().await?;
    println!("leader after resign = {:?}", e.leader().await?);
    db.transact(|t| {
        Box::pin(async move {
            t.delete_tree("/c")?;
            Ok(())
        })
    })
    .await?;
    Ok(())
}
