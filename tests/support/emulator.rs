//! The local AWS API emulator (moto server, from the project's .venv), one
//! per test process, on a free port; stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

/// The emulator's program: `HOOKS_MOTO_SERVER`, or the Python that `make`
/// installs moto into (`.venv`), which runs `local/emulator.py` (moto with
/// SQS FIFO groups in order, as `hooks dev` runs it).
pub fn moto_server() -> PathBuf {
    std::env::var_os("HOOKS_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3"))
}

/// The arguments before the emulator's own: the script, unless
/// `HOOKS_MOTO_SERVER` names another program.
fn moto_script() -> Vec<PathBuf> {
    if std::env::var_os("HOOKS_MOTO_SERVER").is_some() {
        Vec::new()
    } else {
        vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local/emulator.py")]
    }
}

#[derive(Debug)]
pub struct Emulator {
    endpoint: String,
    child: Child,
}

impl Emulator {
    /// Starts moto server on a free loopback port and waits until it answers.
    pub fn start() -> Emulator {
        let program = moto_server();
        assert!(
            program.exists(),
            "the AWS emulator is not installed at {}: run `make test` (it installs moto into .venv)",
            program.display()
        );
        for _ in 0..5 {
            let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(a) => a.port(),
                Err(e) => panic!("no free port: {e}"),
            };
            let child = match Command::new(&program)
                .args(moto_script())
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(c) => c,
                Err(e) => panic!("cannot start {}: {e}", program.display()),
            };
            let mut emu = Emulator {
                endpoint: format!("http://127.0.0.1:{port}"),
                child,
            };
            if emu.wait_ready(Duration::from_secs(30)) {
                return emu;
            }
            // Lost the port to another process, or moto died: try another.
            drop(emu);
        }
        panic!("the AWS emulator did not start");
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let started = Instant::now();
        let addr = self.endpoint.trim_start_matches("http://").to_owned();
        while started.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if answers_as_moto(&addr) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The emulator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A DynamoDB client for this emulator, as the SDK builds it from the
    /// environment that [`Emulator::env`] gives a process.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "emulator"))
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// The SDK configuration for this emulator (region, dummy credentials, endpoint).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "emulator"))
            .load()
            .await
    }

    /// The environment that points a process (the `hooks` command, a function) here.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A name no other test uses: `<prefix>-<pid>-<n>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the server at `addr` is a moto server (its management API answers).
fn answers_as_moto(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /moto-api/data.json HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}
