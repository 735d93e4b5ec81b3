//! Anti-entropy survives a damaged database: digests that no longer match
//! their rows are rebuilt from the rows, version rows holding partitions
//! that cannot be are put right, and a lost version still comes back.

use std::time::{Duration, Instant};

use crate::cluster::Net;
use crate::replication::{counter, entropy_net, get_from, sqlite};

#[tokio::test(flavor = "multi_thread")]
async fn anti_entropy_rebuilds_damaged_digests_and_partitions() {
    let mut net = entropy_net(200).await;

    // Behind node 2's back: every digest is off by one, one version's
    // partition is text and another's out of range (the triggers carry both
    // into the digests), and one version is lost.
    net.nodes[2].stop();
    let db = net.nodes[2].data().join("meta/strata.db");
    sqlite(&db, "UPDATE entropy_digests SET digest = digest + 1");
    sqlite(&db, "UPDATE versions SET part = 'abc' WHERE key = 'obj-00007'");
    sqlite(&db, "UPDATE versions SET part = 99999 WHERE key = 'obj-00008'");
    sqlite(&db, "DELETE FROM objects WHERE key = 'obj-00042'");
    sqlite(&db, "DELETE FROM versions WHERE key = 'obj-00042'");
    assert_ne!(sqlite(&db, "SELECT count(*) FROM entropy_digests WHERE typeof(part) != 'integer'"), "[(0,)]");
    net.boot(2);

    let deadline = Instant::now() + Duration::from_secs(60);
    while sqlite(&db, "SELECT count(*) FROM versions WHERE key = 'obj-00042'") != "[(1,)]" {
        assert!(Instant::now() < deadline, "the lost version never came back to node 2");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let data = get_from(&mut net.nodes[2].client().await, "default", "obj-00042", "").await.unwrap().1;
    assert_eq!(data.len(), 1024 + 42);
    let impossible = "SELECT count(*) FROM versions WHERE typeof(part) != 'integer' OR part >= 4096";
    while sqlite(&db, impossible) != "[(0,)]" {
        assert!(Instant::now() < deadline, "node 2's impossible partitions were never put right");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Node 2 rebuilds what differs with nothing to copy; then passes find
    // nothing differing. The healthy nodes find nothing wrong with theirs.
    let differing = |net: &Net| (0..3).map(|i| counter(&net.nodes[i], "strata_anti_entropy_partitions_differing_total")).sum::<u64>();
    let passes = |net: &Net| counter(&net.nodes[2], "strata_anti_entropy_passes_total");
    loop {
        let (d, p) = (differing(&net), passes(&net));
        // Two passes of node 2 with nothing differing anywhere.
        while passes(&net) < p + 2 {
            assert!(Instant::now() < deadline, "anti-entropy passes stopped");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if differing(&net) == d {
            break;
        }
        assert!(Instant::now() < deadline, "partitions still differ after their digests should have been rebuilt");
    }
    assert!(counter(&net.nodes[2], "strata_anti_entropy_partitions_rebuilt_total") > 0, "node 2 rebuilt its damaged partitions");
    for i in 0..2 {
        assert_eq!(counter(&net.nodes[i], "strata_anti_entropy_partitions_rebuilt_total"), 0, "node {i} had nothing to rebuild");
    }
}
