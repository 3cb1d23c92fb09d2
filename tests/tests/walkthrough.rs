//! The README walkthrough end to end: `sdpcfg process realtime:testdask:0.1.0`, the
//! processing controller and the Helm deployer as real processes against a real etcd,
//! `testdask <pb_id>` as a local process, then `sdpcfg delete -R /pb/<pb_id>` and
//! everything undone. Once with the render target (the real `helm template` of the real
//! charts) and once with the cluster target driving the stand-in helm.

use anyhow::Result;
use sdp_e2e::system::{Options, System, Target};
use sdp_e2e::walkthrough::{self, Expect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_with_the_render_target_renders_and_removes_both_releases() -> Result<()> {
    let system = System::start(Options::new(Target::Render)).await?;
    let result = async {
        walkthrough::run(&system, &Expect::without_cluster()).await?;
        system.shutdown().await
    }
    .await;
    system.report(result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_with_the_stand_in_helm_installs_and_uninstalls_both_releases() -> Result<()> {
    let system = System::start(Options::new(Target::FakeHelm)).await?;
    let result = async {
        walkthrough::run(&system, &Expect::without_cluster()).await?;
        system.shutdown().await
    }
    .await;
    system.report(result)
}
