//! The little HTTP/1.1 the bench tools speak: parsing one response from the front of a
//! buffer (status line, headers, `Content-Length` body; no chunking), shared by the beacon
//! flood's keep-alive connections and the admin requests of the convergence tool and the
//! soak, a blocking one-request exchange for the latter, and [`AdminApi`] on top of it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest response (head and body) the tools accept: their documents are a few KiB.
pub const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The header lines after the status line (look one up with [`Response::header`]): kept
    /// as one string so that parsing a response costs the flood one allocation, not one per
    /// header.
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A whole response from the front of `buf` and how many bytes it took, or `None` if more
/// is needed.
pub fn parse(buf: &[u8]) -> io::Result<Option<(Response, usize)>> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head not UTF-8"))?;
    let (status_line, fields) = head.split_once("\r\n").unwrap_or((head, ""));
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line in {head:?}")))?;
    let mut length = 0usize;
    for line in fields.split("\r\n") {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("bad content-length"))?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked responses are not supported"));
            }
        }
    }
    let total = head_end + 4 + length;
    if total > MAX_RESPONSE {
        return Err(bad("response too large"));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = buf[head_end + 4..total].to_vec();
    Ok(Some((
        Response {
            status,
            head: fields.to_owned(),
            body,
        },
        total,
    )))
}

/// One request on a fresh connection (`Connection: close`), blocking, everything within
/// `timeout` per read or write. `headers` are sent as given, after `Host`.
pub fn exchange(
    server: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((response, _)) = parse(&buf)? {
            return Ok(response);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before a whole response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// steerdns's admin API with a bearer token, one blocking request per connection.
pub struct AdminApi {
    pub server: SocketAddr,
    auth: String,
}

impl AdminApi {
    pub fn new(server: SocketAddr, token: &str) -> Self {
        Self {
            server,
            auth: format!("Bearer {token}"),
        }
    }

    /// `extra` headers after `Authorization`; 10 s per read or write.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut headers = vec![("Authorization", self.auth.as_str())];
        headers.extend_from_slice(extra);
        exchange(
            self.server,
            method,
            path,
            &headers,
            body,
            Duration::from_secs(10),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_whole_or_not_at_all() {
        let text = b"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\ncontent-length: 2\r\n\r\nhiHTTP/1.1";
        let (r, used) = parse(text).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice(), used), (200, &b"hi"[..], 53));
        assert_eq!(r.header("etag"), Some("\"abc\""));
        assert!(parse(&text[..52]).unwrap().is_none(), "body incomplete");
        assert!(
            parse(b"HTTP/1.1 204 No").unwrap().is_none(),
            "head incomplete"
        );
        assert!(parse(b"nonsense\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n").is_err());
    }
}
