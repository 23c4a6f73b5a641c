//! A real Apache ZooKeeper (Debian's `zookeeper` package, `zkServer.sh start-foreground`)
//! on its own port and data directory, and a small client to write its nodes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use zookeeper_client as zk;

const ZK_SERVER: &str = "/usr/share/zookeeper/bin/zkServer.sh";

pub struct ZooKeeper {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl ZooKeeper {
    /// Starts a server on a free port with a data directory of its own.
    pub fn start() -> ZooKeeper {
        Self::start_on(super::free_port())
    }

    /// Starts a server on `port` (one taken from the allocator).
    pub fn start_on(port: u16) -> ZooKeeper {
        let dir = super::scratch_dir(&format!("zk-{port}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            dir.join("zoo.cfg"),
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                 minSessionTimeout=1000\nmaxSessionTimeout=60000\n4lw.commands.whitelist=ruok\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut z = ZooKeeper { port, dir, child: None };
        z.spawn();
        z
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("zk.log")).unwrap();
        let child = Command::new(ZK_SERVER)
            .arg("start-foreground")
            .arg(self.dir.join("zoo.cfg"))
            .env("JMXDISABLE", "true")
            .env("ZOO_LOG_DIR", self.dir.join("log"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("ZooKeeper is installed (apt-get install zookeeper)");
        super::register_cleanup(child.id(), None);
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.is_ok() {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("ZooKeeper exited with {st}: {}", std::fs::read_to_string(self.dir.join("zk.log")).unwrap());
            }
            assert!(Instant::now() < deadline, "ZooKeeper on port {} not ready in 60 s", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the server answers `ruok` with `imok`.
    fn is_ok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = String::new();
        s.write_all(b"ruok").is_ok() && s.read_to_string(&mut answer).is_ok() && answer == "imok"
    }

    /// Kills the server at once; its data stays for [`ZooKeeper::restart`].
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            super::unregister_cleanup(c.id());
        }
    }

    /// Starts a killed server again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn hosts(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A `[zookeeper]` section for this server.
    pub fn section(&self, extra: &str) -> String {
        format!("\n[zookeeper]\nhosts = \"{}\"\nsession_timeout_ms = 4000\n{extra}\n", self.hosts())
    }

    /// A session of the test's own.
    pub fn client(&self) -> Zk {
        let hosts = self.hosts();
        let client =
            smol::block_on(zk::Client::connector().with_session_timeout(Duration::from_secs(20)).connect(&hosts))
                .unwrap();
        Zk { client }
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One ZooKeeper shared by the tests of a binary (each uses paths of its own).
pub fn shared_zookeeper() -> &'static ZooKeeper {
    static SHARED: OnceLock<ZooKeeper> = OnceLock::new();
    SHARED.get_or_init(ZooKeeper::start)
}

pub struct Zk {
    client: zk::Client,
}

impl Zk {
    /// Creates or overwrites `path` (parents made as needed) with `data`.
    pub fn put(&self, path: &str, data: &str) {
        smol::block_on(async {
            let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            if let Some((parent, _)) = path.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
                self.client.mkdir(parent, &options).await.unwrap();
            }
            match self.client.create(path, data.as_bytes(), &options).await {
                Ok(_) => {}
                Err(zk::Error::NodeExists) => {
                    self.client.set_data(path, data.as_bytes(), None).await.unwrap();
                }
                Err(e) => panic!("create {path}: {e}"),
            }
        })
    }

    /// A server child of corelay's form.
    pub fn put_server(&self, path: &str, address: std::net::SocketAddr, role: &str) {
        self.put(path, &format!(r#"{{"address":"{address}","role":"{role}","weight":1}}"#));
    }

    pub fn delete(&self, path: &str) {
        smol::block_on(async {
            match self.client.delete(path, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => panic!("delete {path}: {e}"),
            }
        })
    }

    pub fn children(&self, path: &str) -> Vec<String> {
        smol::block_on(self.client.list_children(path)).unwrap_or_default()
    }

    /// The children, or the error's name (`NoNode`, `NoAuth`, ...).
    pub fn try_children(&self, path: &str) -> Result<Vec<String>, String> {
        smol::block_on(self.client.list_children(path)).map_err(|e| format!("{e:?}"))
    }
}
