//! `corelay zk-publish`: writes a configuration's clusters into ZooKeeper, so a fleet can
//! be seeded from one file. Each cluster goes to its `zk_path` (or `root/clusters/NAME`),
//! one child per server named by its address, holding the JSON the watcher reads;
//! children of that path the file does not list are deleted.

use zookeeper_client as zk;

use super::topology::Node;
use crate::config::Config;

/// What was written, cluster by cluster, for the operator.
pub fn publish(config: &Config) -> Result<Vec<String>, String> {
    let zk = config.file.zookeeper.as_ref().ok_or("the configuration has no [zookeeper] section")?;
    smol::block_on(async {
        let client = super::connect(zk).await?;
        let acls = if zk.auth_user.is_empty() { zk::Acls::anyone_all() } else { zk::Acls::creator_all() };
        let options = zk::CreateMode::Persistent.with_acls(acls);
        let mut done = Vec::new();
        for c in &config.file.cluster {
            let path = match &c.zk_path {
                Some(p) => zk.absolute(p),
                None => zk.absolute(&format!("clusters/{}", c.name)),
            };
            let fail = |what: &str, e: zk::Error| format!("{what} {path}: {e}");
            client.mkdir(&path, &options).await.map_err(|e| fail("cannot create", e))?;
            let wanted: Vec<(String, Vec<u8>)> = c
                .server
                .iter()
                .map(|s| {
                    let node = Node::of(s);
                    (node.address.clone(), serde_json::to_vec(&node).unwrap_or_default())
                })
                .collect();
            let existing = client.list_children(&path).await.map_err(|e| fail("cannot list", e))?;
            let mut removed = 0;
            for child in &existing {
                if !wanted.iter().any(|(name, _)| name == child) {
                    match client.delete(&format!("{path}/{child}"), None).await {
                        Ok(()) | Err(zk::Error::NoNode) => removed += 1,
                        Err(e) => return Err(fail("cannot delete a child of", e)),
                    }
                }
            }
            for (name, data) in &wanted {
                let child = format!("{path}/{name}");
                match client.create(&child, data, &options).await {
                    Ok(_) => {}
                    Err(zk::Error::NodeExists) => {
                        client.set_data(&child, data, None).await.map_err(|e| fail("cannot write", e))?;
                    }
                    Err(e) => return Err(fail("cannot create", e)),
                }
            }
            let hint =
                if c.zk_path.is_none() { format!(" (set zk_path = \"{path}\" on the cluster)") } else { String::new() };
            done.push(format!(
                "cluster {}: {} server(s) written to {path}, {removed} stale child(ren) deleted{hint}",
                c.name,
                wanted.len()
            ));
        }
        Ok(done)
    })
}
