//! Loopback servers and launchers for the object-store and cluster tests: a child process
//! killed on drop with the environment that points vemo at it, free ports, `objects.py`
//! (buckets and copies) and `infra/local/cluster.sh`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::vemo_bin;

/// The repository root (for the scripts in `infra/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits until something listens on `port` (60 s at most).
pub fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A server process, killed on drop, and the environment that points clients at it.
pub struct Server {
    pub child: Child,
    pub env: Vec<(&'static str, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `command` (output discarded) and waits for it to listen on `port`; `Err` when the
    /// program cannot be started at all.
    pub fn start(
        mut command: Command,
        port: u16,
        env: Vec<(&'static str, String)>,
    ) -> std::io::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Server { child, env };
        wait_for_port(port, &format!("{command:?}"));
        Ok(server)
    }

    /// `infra/stores/objects.py ARGS` against this server, asserting it succeeded.
    pub fn objects(&self, args: &[&str]) {
        let out = Command::new("python3")
            .arg(repo_root().join("infra/stores/objects.py"))
            .args(args)
            .envs(self.env())
            .output()
            .expect("objects.py");
        assert!(
            out.status.success(),
            "objects.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The environment as `(key, value)` pairs for `Command::envs`.
    pub fn env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str()))
    }
}

/// moto's S3 server on a free port, with the AWS environment for it (`secret` the secret key).
pub fn start_moto(secret: &str) -> Server {
    let port = free_port();
    let mut moto = Command::new("python3");
    moto.args([
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]);
    let env = vec![
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "vemo-test-key".into()),
        ("AWS_SECRET_ACCESS_KEY", secret.into()),
    ];
    Server::start(moto, port, env).expect("start moto (infra/test.sh installs moto[server])")
}

/// `infra/local/cluster.sh N W JOB ARGS` with the test binary, its run folder
/// `dir/run`, and `env`.
pub fn cluster_sh<'a>(
    dir: &Path,
    job: &Path,
    layout: (usize, usize),
    run: &str,
    args: &[&str],
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Output {
    Command::new("bash")
        .arg(repo_root().join("infra/local/cluster.sh"))
        .args([layout.0.to_string(), layout.1.to_string()])
        .arg(job)
        .args(args)
        .env("VEMO_BIN", vemo_bin())
        .env("VEMO_CLUSTER_DIR", dir.join(run))
        .env("VEMO_LOG", "warn")
        .envs(env)
        .output()
        .expect("start cluster.sh")
}
