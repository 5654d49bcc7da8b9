//! `cocolm prepare` of a prefix in an S3-compatible server on loopback: `moto` in server
//! mode (from PyPI; `.ci/run` installs it), credentials and endpoint from the usual
//! `AWS_*` variables.

use crate::prepare::{files_of, prepare_args, shard_stream, small_tokenizer};
use crate::util::{cocolm, python_with};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start(python: &Path) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto.server");
        let moto = Moto { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto.server did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The `cocolm` command with the server as its S3 endpoint, by the usual variables.
    fn cocolm(&self) -> Command {
        let mut command = cocolm();
        command
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1");
        command
    }

    /// An unsigned PUT (moto does not check signatures); returns the status line.
    fn put(&self, path: &str, body: &[u8]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or_default().to_string()
    }
}

#[test]
fn prepare_reads_a_prefix_from_an_s3_compatible_server() {
    let Some(python) = python_with(&["moto.server", "flask"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    // A local corpus of three formats, and the same files under s3://corpus/data/.
    let local = dir.path().join("local");
    std::fs::create_dir_all(local.join("sub")).unwrap();
    let moby = std::fs::read(crate::prepare::moby()).unwrap();
    let files: [(&str, Vec<u8>); 4] = [
        ("a.jsonl.zst", moby),
        (
            "sub/b.txt",
            b"A plain text document, one per file.".to_vec(),
        ),
        (
            "sub/c.jsonl",
            b"{\"text\": \"first\"}\n{\"text\": \"second\"}\n".to_vec(),
        ),
        ("sub/notes.md", b"skipped: unknown format".to_vec()),
    ];
    let moto = Moto::start(&python);
    assert!(moto.put("/corpus", b"").contains(" 200"), "bucket created");
    for (name, bytes) in &files {
        std::fs::write(local.join(name), bytes).unwrap();
        let status = moto.put(&format!("/corpus/data/{name}"), bytes);
        assert!(status.contains(" 200"), "{name}: {status}");
    }

    let remote = dir.path().join("remote");
    let mut args = prepare_args(Path::new("s3://corpus/data"), &tokenizer, &remote, &[]);
    args.extend(["--seq-len", "64", "--retries", "2"].map(String::from));
    let out = moto.cocolm().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped s3://corpus/data/sub/notes.md"),
        "{stderr}"
    );
    // A HEAD (is the URL an object? no: 404), a listing and a GET per object (3);
    // nothing failed.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("object stores: 5 requests, 0 of them failed and were retried"),
        "{stdout}"
    );
    let local_out = dir.path().join("local-out");
    crate::util::run_ok(&{
        let mut a = prepare_args(&local, &tokenizer, &local_out, &[]);
        a.extend(["--seq-len", "64"].map(String::from));
        a
    });
    assert_eq!(shard_stream(&remote), shard_stream(&local_out));
    let shards = |dir: &Path| {
        let mut f = files_of(dir);
        f.retain(|name, _| name.starts_with("shard-"));
        f
    };
    assert_eq!(shards(&remote), shards(&local_out));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(remote.join("manifest.json")).unwrap()).unwrap();
    let inputs: Vec<&str> = manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        inputs,
        [
            "s3://corpus/data/a.jsonl.zst",
            "s3://corpus/data/sub/b.txt",
            "s3://corpus/data/sub/c.jsonl"
        ]
    );

    // A bucket that does not exist: an error naming the URL.
    let missing = dir.path().join("missing");
    let out = cocolm()
        .args(prepare_args(
            Path::new("s3://nothing/here"),
            &tokenizer,
            &missing,
            &[],
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("s3://nothing/here"), "{stderr}");
}
