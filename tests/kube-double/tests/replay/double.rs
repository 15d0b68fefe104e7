//! Starts the double on loopback, in a scratch directory, and stops it when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Double {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Double {
    /// `env` adds to (or overrides) the double's configuration.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let dir =
            std::env::temp_dir().join(format!("kube-double-replay-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let log = std::fs::File::create(dir.join("double.log")).expect("a log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-double"));
        cmd.env("KUBE_DOUBLE_LISTEN", addr.to_string())
            .env("KUBE_DOUBLE_ADMIN_CONF", dir.join("admin.conf"))
            .env("KUBE_DOUBLE_PKI_DIR", dir.join("pki"))
            .env("KUBE_DOUBLE_IMAGE_CHECK", "off")
            .env("KUBE_DOUBLE_CLUSTER", "replay")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start kube-double");
        let double = Double { child, addr, dir };
        double.wait_listening();
        double
    }

    fn wait_listening(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if self.dir.join("pki/ca.crt").exists()
                && std::net::TcpStream::connect(self.addr).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "kube-double did not listen on {} (log: {})",
            self.addr,
            self.log()
        );
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("pki/ca.crt")).expect("the double's CA")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("double.log")).unwrap_or_default()
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
