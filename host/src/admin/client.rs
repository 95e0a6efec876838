//! The operator side of the admin API, for `minotaur publish`, `sessions` and
//! `health`: a minimal HTTP/1.1 client over a plain TCP stream (no TLS; the
//! admin API and health checks are reached on the node's own address, and the
//! Docker image has no curl). Called by `main`.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Longest any request may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request failed before an HTTP status came back.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad url `{0}`: expected http://host:port[/path]")]
    BadUrl(String),
    #[error("connecting to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed HTTP response")]
    BadResponse,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// `(host:port, path)` of an `http://` URL, `path` joined onto its path.
fn split_url(url: &str, path: &str) -> Result<(String, String), ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::BadUrl(url.to_owned()))?;
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(ClientError::BadUrl(url.to_owned()));
    }
    let full = format!("{}{}", base.trim_end_matches('/'), path);
    let full = if full.is_empty() {
        "/".to_owned()
    } else {
        full
    };
    Ok((authority.to_owned(), full))
}

/// One request; `Connection: close`, so the body runs to the end of stream.
pub async fn request(
    method: &str,
    url: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<HttpResponse, ClientError> {
    let (authority, path) = split_url(url, path)?;
    let exchange = async {
        let mut stream =
            TcpStream::connect(&authority)
                .await
                .map_err(|source| ClientError::Connect {
                    addr: authority.clone(),
                    source,
                })?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if !body.is_empty() {
            head.push_str("Content-Type: application/wasm\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse(&raw)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| ClientError::Timeout(TIMEOUT))?
}

fn parse(raw: &[u8]) -> Result<HttpResponse, ClientError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ClientError::BadResponse)?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| ClientError::BadResponse)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(ClientError::BadResponse)?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(ClientError::BadResponse)?;
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or(ClientError::BadResponse)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = b.get(..size).ok_or(ClientError::BadResponse)?;
        out.extend_from_slice(chunk);
        b = b.get(size + 2..).ok_or(ClientError::BadResponse)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:7878", "/admin/sessions").unwrap(),
            ("127.0.0.1:7878".into(), "/admin/sessions".into())
        );
        assert_eq!(
            split_url("http://h:1/healthz", "").unwrap(),
            ("h:1".into(), "/healthz".into())
        );
        assert_eq!(split_url("http://h:1", "").unwrap().1, "/");
        assert!(split_url("https://h:1", "").is_err());
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let r = parse(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (401, &b"{}"[..]));
        let r =
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
    }
}
