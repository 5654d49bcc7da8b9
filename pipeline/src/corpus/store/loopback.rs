//! A small HTTP/1.1 file server on loopback for the tests: GET (whole or `Range:
//! bytes=A-` / `A-B`) and HEAD of in-memory files, with an ETag, and faults planned per
//! path — a status code, or a body cut short by closing the connection.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the server does instead of answering a GET of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an empty body.
    Status(u16),
    /// Send the headers of the full answer and only this many body bytes, then close.
    Truncate(usize),
}

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    /// Faults for the next requests of a path, in order.
    planned: HashMap<String, VecDeque<Fault>>,
    /// Paths whose every GET fails with this status.
    down: HashMap<String, u16>,
    /// GET and HEAD requests seen, per path.
    requests: HashMap<String, usize>,
}

/// The server; it runs until the test process ends.
#[derive(Clone)]
pub struct Server {
    state: Arc<Mutex<State>>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Start serving on a free loopback port.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        Server { state, base }
    }

    /// Serve `bytes` at `/path`.
    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        self.lock().files.insert(path.to_string(), bytes);
    }

    /// The next GETs of `/path` meet these faults, one each.
    pub fn plan(&self, path: &str, faults: &[Fault]) {
        self.lock()
            .planned
            .entry(path.to_string())
            .or_default()
            .extend(faults);
    }

    /// Every GET of `/path` fails with `status` (`None`: it recovers).
    pub fn set_down(&self, path: &str, status: Option<u16>) {
        let mut state = self.lock();
        match status {
            Some(s) => state.down.insert(path.to_string(), s),
            None => state.down.remove(path),
        };
    }

    /// Requests of `/path` so far.
    pub fn requests(&self, path: &str) -> usize {
        self.lock().requests.get(path).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = value.trim().strip_prefix("bytes=").map(str::to_string);
        }
    }
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (body, fault) = {
        let mut state = state.lock().unwrap();
        *state.requests.entry(path.to_string()).or_default() += 1;
        // Faults hit downloads only: listing (HEAD) still works.
        let fault = match (method, state.down.get(path)) {
            ("GET", Some(&status)) => Some(Fault::Status(status)),
            ("GET", None) => state.planned.get_mut(path).and_then(|q| q.pop_front()),
            _ => None,
        };
        (state.files.get(path).cloned(), fault)
    };
    let respond = |out: &mut TcpStream, status: &str, headers: &str| {
        write!(
            out,
            "HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n"
        )
    };
    if method != "GET" && method != "HEAD" {
        return respond(&mut out, "405 Method Not Allowed", "Content-Length: 0\r\n");
    }
    if let Some(Fault::Status(code)) = fault {
        return respond(
            &mut out,
            &format!("{code} Planned"),
            "Content-Length: 0\r\n",
        );
    }
    let Some(body) = body else {
        return respond(&mut out, "404 Not Found", "Content-Length: 0\r\n");
    };
    let total = body.len();
    let etag = format!(
        "\"{total:x}-{:x}\"",
        body.iter()
            .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    );
    let (status, start, end) = match range.as_deref().and_then(|r| r.split_once('-')) {
        Some((a, b)) => {
            let start: usize = a.parse().unwrap_or(0);
            let end = b.parse::<usize>().map_or(total, |b| (b + 1).min(total));
            ("206 Partial Content", start.min(total), end)
        }
        None => ("200 OK", 0, total),
    };
    let mut headers = format!("Content-Length: {}\r\nETag: {etag}\r\n", end - start);
    if status.starts_with("206") {
        headers.push_str(&format!(
            "Content-Range: bytes {start}-{}/{total}\r\n",
            end.max(1) - 1
        ));
    }
    respond(&mut out, status, &headers)?;
    if method == "HEAD" {
        return Ok(());
    }
    let send = match fault {
        Some(Fault::Truncate(n)) => &body[start..(start + n).min(end)],
        _ => &body[start..end],
    };
    out.write_all(send)?;
    out.flush()
}
