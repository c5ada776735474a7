//! WebDataset corpora (`[input] format = "webdataset"`): `.tar` shards in which a sample is the
//! run of files sharing a key (`KEY.jpg`, `KEY.txt`, `KEY.json`), as img2dataset, LAION and
//! DataComp write them.
//!
//! Each tar is streamed once, never held whole in memory nor unpacked, to index its samples:
//! the captions and JSON (small, bounded) are kept, the image is only located (its byte range).
//! The index becomes ordinary [`ManifestEntry`]s whose image URI names the member's range,
//! `TAR#bytes=START+LEN/NAME`, which [`member_range`] reads back: planning, exactly-once,
//! resume and incremental fingerprints then work as for a manifest, and a worker reads just
//! its samples' images with ranged GETs. What cannot be read becomes an entry whose image URI
//! carries the reason (`TAR#error=REASON`), so that it ends as an `errors` row (stage `read`):
//! a sample without an image, an image cut short by a truncated tar, bytes skipped after a
//! damaged header (id `TARNAME@OFFSET`).

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::ObjectStoreExt;
use vemo_schemas::ManifestEntry;

use crate::manifest::{Manifest, check_unique, manifest_error};
use crate::store::{self, Location};
use crate::{Error, Result};

/// Tar block size.
const BLOCK: usize = 512;
/// Largest text or JSON member kept (a caption or metadata); a larger one is skipped.
pub const MAX_TEXT_MEMBER: u64 = 1 << 20;
/// Image extensions, in the order a sample's image is chosen.
const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];
/// Tars indexed at once.
const INDEX_CONCURRENCY: usize = 8;

/// How samples map to items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebDatasetOptions {
    /// Take the caption from this field of the sample's JSON instead of its `.txt` member.
    pub caption_field: Option<String>,
}

/// Reads every shard named by `input` (a `.tar`, a folder or prefix holding `.tar`s, or a
/// brace pattern such as `s3://bucket/ds/{00000..00099}.tar`) into entries, tar by tar in
/// name order.
pub async fn read_webdataset(input: &str, options: &WebDatasetOptions) -> Result<Manifest> {
    let tars = shard_uris(input).await?;
    if tars.is_empty() {
        return Err(manifest_error(input, "no .tar shards found".into()));
    }
    let indexed: Vec<Result<Vec<ManifestEntry>>> = futures::stream::iter(tars.iter())
        .map(|uri| index_tar(uri, options))
        .buffered(INDEX_CONCURRENCY)
        .collect()
        .await;
    let mut entries = Vec::new();
    for part in indexed {
        entries.extend(part?);
    }
    // Ids are the JSON `key`, else TARNAME/KEY: unique as a manifest's must be.
    check_unique(input, &entries)?;
    Ok(Manifest {
        uri: store::normalize_uri(input)?,
        entries,
    })
}

/// The shard URIs `input` names, in order.
pub async fn shard_uris(input: &str) -> Result<Vec<String>> {
    if let Some(expanded) = expand_braces(input).map_err(|r| manifest_error(input, r))? {
        return expanded.iter().map(|u| store::normalize_uri(u)).collect();
    }
    let location = store::resolve(input)?;
    if location.uri.ends_with(".tar") {
        return Ok(vec![location.uri]);
    }
    let listed: Vec<object_store::ObjectMeta> = location
        .store
        .list(Some(&location.path))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::store(&location.uri, e))?;
    let prefix = location.path.as_ref().to_string();
    let mut uris: Vec<String> = listed
        .iter()
        .map(|m| m.location.as_ref().to_string())
        .filter(|p| p.ends_with(".tar"))
        .filter_map(|p| {
            p.strip_prefix(&prefix)
                .map(|rest| store::join(&location.uri, rest))
        })
        .collect();
    uris.sort();
    Ok(uris)
}

/// Expands one `{A..B}` range (zero-padded to A's width) in `pattern`; `None` without one.
fn expand_braces(pattern: &str) -> std::result::Result<Option<Vec<String>>, String> {
    let Some(open) = pattern.find('{') else {
        return Ok(None);
    };
    let close = pattern[open..]
        .find('}')
        .map(|c| open + c)
        .ok_or("a `{` without its `}`")?;
    let inner = &pattern[open + 1..close];
    let (a, b) = inner
        .split_once("..")
        .ok_or_else(|| format!("`{{{inner}}}` is not a range like {{00000..00099}}"))?;
    let (from, to): (u64, u64) = match (a.parse(), b.parse()) {
        (Ok(from), Ok(to)) if from <= to => (from, to),
        _ => {
            return Err(format!(
                "`{{{inner}}}` is not a range like {{00000..00099}}"
            ));
        }
    };
    if to - from >= 1_000_000 {
        return Err(format!("`{{{inner}}}` names over a million shards"));
    }
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    let mut out = Vec::with_capacity((to - from + 1) as usize);
    for n in from..=to {
        let name = format!("{head}{n:0width$}{tail}", width = a.len());
        match expand_braces(&name)? {
            Some(more) => out.extend(more),
            None => out.push(name),
        }
    }
    Ok(Some(out))
}

/// A member's byte range in its tar, as an image URI names it: `(tar URI, start, length)`.
/// `Err(reason)` for an entry that stands for something unreadable (`#error=`); `Ok(None)` for
/// any other URI.
pub fn member_range(uri: &str) -> std::result::Result<Option<(&str, u64, u64)>, String> {
    let Some((tar, fragment)) = uri.split_once('#') else {
        return Ok(None);
    };
    if let Some(reason) = fragment.strip_prefix("error=") {
        return Err(percent_decode(reason));
    }
    let Some(range) = fragment.strip_prefix("bytes=") else {
        return Ok(None);
    };
    let range = range.split('/').next().unwrap_or_default();
    let parsed = range
        .split_once('+')
        .and_then(|(s, l)| Some((s.parse().ok()?, l.parse().ok()?)));
    match parsed {
        Some((start, len)) => Ok(Some((tar, start, len))),
        None => Err(format!("bad member range `{range}` in {uri}")),
    }
}

/// The tar a sample's image URI points into; `None` for any other URI.
pub fn archive_of(uri: &str) -> Option<&str> {
    let (tar, fragment) = uri.split_once('#')?;
    (fragment.starts_with("bytes=") || fragment.starts_with("error=")).then_some(tar)
}

fn member_uri(tar: &str, start: u64, len: u64, name: &str) -> String {
    format!("{tar}#bytes={start}+{len}/{}", percent_encode(name))
}

fn error_uri(tar: &str, reason: &str) -> String {
    format!("{tar}#error={}", percent_encode(reason))
}

fn percent_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// One member of a tar: its path, where its data starts, its size, and its data when kept.
struct Member {
    name: String,
    start: u64,
    size: u64,
    data: Option<Vec<u8>>,
    /// The tar ended before the member's last byte.
    truncated: bool,
}

/// Indexes one tar into entries; a tar that cannot be opened at all is one `errors` entry.
async fn index_tar(uri: &str, options: &WebDatasetOptions) -> Result<Vec<ManifestEntry>> {
    let location = store::resolve(uri)?;
    let tar_name = tar_name(uri);
    let stream = match location.store.get(&location.path).await {
        Ok(got) => got.into_stream(),
        Err(e) => {
            let reason = match e {
                object_store::Error::NotFound { .. } => format!("shard not found: {uri}"),
                other => Error::store(uri, other).to_string(),
            };
            return Ok(vec![ManifestEntry {
                id: tar_name.clone(),
                image: error_uri(uri, &reason),
                caption: None,
                metadata: None,
            }]);
        }
    };
    let mut reader = Blocks::new(stream, uri);
    let mut samples = SampleBuilder::new(uri, &tar_name, options);
    let mut long_name: Option<String> = None;
    loop {
        let at = reader.offset;
        let Some(header) = reader.take(BLOCK).await? else {
            break;
        };
        if header.len() < BLOCK {
            samples.damaged(at, "the tar ends inside a header");
            break;
        }
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let Some(parsed) = parse_header(&header) else {
            // Resynchronise on the next block that is a valid header.
            let skipped_from = at;
            let mut resumed = None;
            while let Some(block) = reader.take(BLOCK).await? {
                if block.len() == BLOCK && parse_header(&block).is_some() {
                    resumed = Some(block);
                    break;
                }
            }
            let to = reader.offset - resumed.as_ref().map_or(0, |_| BLOCK as u64);
            samples.damaged(
                skipped_from,
                &format!("damaged tar: no valid header in bytes {skipped_from}..{to}"),
            );
            match resumed {
                Some(block) => {
                    reader.push_back(block);
                    continue;
                }
                None => break,
            }
        };
        let (name, size, kind) = parsed;
        let start = reader.offset;
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        match kind {
            b'L' | b'x' if size <= MAX_TEXT_MEMBER => {
                let data = reader.take(size as usize).await?.unwrap_or_default();
                reader.skip(padded - data.len() as u64).await?;
                let path = if kind == b'L' {
                    Some(
                        String::from_utf8_lossy(&data)
                            .trim_end_matches('\0')
                            .to_string(),
                    )
                } else {
                    pax_path(&data)
                };
                if path.is_some() {
                    long_name = path;
                }
            }
            b'0' | b'\0' | b'7' => {
                // `tar -C DIR .` writes `./KEY.jpg`: the key is `KEY` all the same.
                let name = long_name.take().unwrap_or(name);
                let name = name.trim_start_matches("./").to_string();
                let keep = is_text(&name) && size <= MAX_TEXT_MEMBER;
                let (data, read) = if keep {
                    let data = reader.take(size as usize).await?.unwrap_or_default();
                    let n = data.len() as u64;
                    (Some(data), n)
                } else {
                    (None, reader.skip(size).await?)
                };
                let truncated = read < size;
                samples.add(Member {
                    name,
                    start,
                    size,
                    data,
                    truncated,
                });
                if truncated {
                    break;
                }
                reader.skip(padded - size).await?;
            }
            _ => {
                long_name = None;
                if reader.skip(padded).await? < padded {
                    break;
                }
            }
        }
    }
    Ok(samples.finish())
}

/// `(path, size, type flag)` of a valid ustar/GNU/v7 header block; `None` when its checksum
/// does not match or its size field is unreadable.
fn parse_header(block: &[u8]) -> Option<(String, u64, u8)> {
    let stored = octal(&block[148..156])?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != sum {
        return None;
    }
    let size = if block[124] & 0x80 != 0 {
        // GNU base-256 size.
        block[125..136].iter().try_fold(0u64, |acc, &b| {
            acc.checked_mul(256)?.checked_add(u64::from(b))
        })?
    } else {
        octal(&block[124..136])?
    };
    let text = |range: std::ops::Range<usize>| {
        let raw = &block[range];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end]).into_owned()
    };
    let mut name = text(0..100);
    if &block[257..262] == b"ustar" {
        let prefix = text(345..500);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    Some((name, size, block[156]))
}

/// An octal field (NUL- or space-terminated, maybe space-padded).
fn octal(field: &[u8]) -> Option<u64> {
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `path=` record of a pax extended header.
fn pax_path(data: &[u8]) -> Option<String> {
    String::from_utf8_lossy(data).lines().find_map(|record| {
        let (_, kv) = record.split_once(' ')?;
        kv.strip_prefix("path=").map(str::to_string)
    })
}

fn is_text(name: &str) -> bool {
    matches!(extension(name).as_deref(), Some("txt" | "json"))
}

/// `(key, extension)` as WebDataset splits a member path: the key keeps the folders and the
/// file name up to its first dot.
fn split_key(name: &str) -> Option<(&str, &str)> {
    let file_start = name.rfind('/').map_or(0, |i| i + 1);
    let dot = name[file_start..].find('.')? + file_start;
    Some((&name[..dot], &name[dot + 1..]))
}

fn extension(name: &str) -> Option<String> {
    split_key(name).map(|(_, ext)| ext.to_ascii_lowercase())
}

/// The tar's file name without `.tar`, the prefix of ids that have no JSON `key`.
fn tar_name(uri: &str) -> String {
    let name = uri.rsplit('/').next().unwrap_or(uri);
    name.strip_suffix(".tar").unwrap_or(name).to_string()
}

/// Groups consecutive members by key into entries.
struct SampleBuilder<'a> {
    tar: &'a str,
    tar_name: &'a str,
    options: &'a WebDatasetOptions,
    key: Option<String>,
    members: Vec<Member>,
    entries: Vec<ManifestEntry>,
}

impl<'a> SampleBuilder<'a> {
    fn new(tar: &'a str, tar_name: &'a str, options: &'a WebDatasetOptions) -> Self {
        Self {
            tar,
            tar_name,
            options,
            key: None,
            members: Vec::new(),
            entries: Vec::new(),
        }
    }

    fn add(&mut self, member: Member) {
        let Some((key, _)) = split_key(&member.name) else {
            return; // A file without an extension belongs to no sample.
        };
        if self.key.as_deref() != Some(key) {
            self.flush();
            self.key = Some(key.to_string());
        }
        self.members.push(member);
    }

    /// Bytes from `offset` could not be read: an entry of their own (id `TARNAME@OFFSET`).
    fn damaged(&mut self, offset: u64, reason: &str) {
        self.flush();
        self.entries.push(ManifestEntry {
            id: format!("{}@{offset}", self.tar_name),
            image: error_uri(self.tar, reason),
            caption: None,
            metadata: None,
        });
    }

    fn flush(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let members = std::mem::take(&mut self.members);
        let find = |ext: &str| {
            members
                .iter()
                .find(|m| extension(&m.name).as_deref() == Some(ext))
        };
        let text = |ext: &str| {
            find(ext)
                .and_then(|m| m.data.as_ref().filter(|_| !m.truncated))
                .map(|d| String::from_utf8_lossy(d).into_owned())
        };
        let mut json = text("json")
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| match v {
                serde_json::Value::Object(map) => Some(map),
                _ => None,
            });
        let id = json
            .as_ref()
            .and_then(|j| match j.get("key")? {
                serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| format!("{}/{key}", self.tar_name));
        let caption = match &self.options.caption_field {
            Some(field) => json.as_mut().and_then(|j| match j.remove(field)? {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            }),
            None => text("txt").map(|t| t.trim_end_matches(['\n', '\r']).to_string()),
        };
        let image = IMAGE_EXTENSIONS.iter().find_map(|ext| find(ext));
        let image = match image {
            Some(m) if m.truncated => error_uri(
                self.tar,
                &format!(
                    "truncated tar: it ends inside {} ({} bytes expected)",
                    m.name, m.size
                ),
            ),
            Some(m) => member_uri(self.tar, m.start, m.size, &m.name),
            None => error_uri(
                self.tar,
                &format!("sample {key} has no image (.jpg, .jpeg, .png or .webp)"),
            ),
        };
        let metadata = json
            .filter(|j| !j.is_empty())
            .map(|j| serde_json::Value::Object(j).to_string());
        self.entries.push(ManifestEntry {
            id,
            image,
            caption,
            metadata,
        });
    }

    fn finish(mut self) -> Vec<ManifestEntry> {
        self.flush();
        self.entries
    }
}

/// A tar's bytes as a stream read block by block: `offset` is the position of the next byte.
struct Blocks<'a> {
    stream: BoxStream<'static, object_store::Result<bytes::Bytes>>,
    uri: &'a str,
    buf: Vec<u8>,
    offset: u64,
}

impl<'a> Blocks<'a> {
    fn new(stream: BoxStream<'static, object_store::Result<bytes::Bytes>>, uri: &'a str) -> Self {
        Self {
            stream,
            uri,
            buf: Vec::new(),
            offset: 0,
        }
    }

    /// Pulls one more chunk into the buffer; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool> {
        match self.stream.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| Error::store(self.uri, e))?;
                self.buf.extend_from_slice(&chunk);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The next `n` bytes (fewer at the end of the tar); `None` when none are left.
    async fn take(&mut self, n: usize) -> Result<Option<Vec<u8>>> {
        while self.buf.len() < n && self.fill().await? {}
        if self.buf.is_empty() && n > 0 {
            return Ok(None);
        }
        let n = n.min(self.buf.len());
        let rest = self.buf.split_off(n);
        let out = std::mem::replace(&mut self.buf, rest);
        self.offset += n as u64;
        Ok(Some(out))
    }

    /// Skips `n` bytes without keeping them; returns how many there were.
    async fn skip(&mut self, n: u64) -> Result<u64> {
        let mut left = n;
        loop {
            let here = left.min(self.buf.len() as u64) as usize;
            self.buf.drain(..here);
            left -= here as u64;
            self.offset += here as u64;
            if left == 0 || !self.fill().await? {
                return Ok(n - left);
            }
        }
    }

    /// Puts a block just taken back in front.
    fn push_back(&mut self, block: Vec<u8>) {
        self.offset -= block.len() as u64;
        let mut joined = block;
        joined.extend_from_slice(&self.buf);
        self.buf = joined;
    }
}

/// Reads `len` bytes at `start` of the object at `location`: a WebDataset member.
pub async fn read_member(location: &Location, start: u64, len: u64) -> Result<bytes::Bytes> {
    let got = location
        .store
        .get_range(&location.path, start..start + len)
        .await
        .map_err(|e| Error::store(&location.uri, e))?;
    if got.len() as u64 != len {
        return Err(Error::Input {
            path: location.uri.clone(),
            reason: format!(
                "truncated: {} of the member's {len} bytes at offset {start}",
                got.len()
            ),
        });
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brace_ranges_expand_zero_padded() {
        let got = expand_braces("s3://b/ds/{00008..00011}.tar").expect("range");
        assert_eq!(
            got.expect("some"),
            [
                "s3://b/ds/00008.tar",
                "s3://b/ds/00009.tar",
                "s3://b/ds/00010.tar",
                "s3://b/ds/00011.tar"
            ]
        );
        assert_eq!(expand_braces("s3://b/ds/").expect("none"), None);
        assert!(expand_braces("s3://b/{3..1}.tar").is_err());
        assert!(expand_braces("s3://b/{a..b}.tar").is_err());
    }

    #[test]
    fn keys_split_as_webdataset_splits_them() {
        assert_eq!(split_key("dir/000012.jpg"), Some(("dir/000012", "jpg")));
        assert_eq!(split_key("a.b/x.seg.png"), Some(("a.b/x", "seg.png")));
        assert_eq!(split_key("README"), None);
    }

    /// A tar member as bytes: a header (`kind` its type flag) and the data, padded.
    fn member(name: &str, kind: u8, data: &[u8]) -> Vec<u8> {
        let mut header = vec![0u8; BLOCK];
        header[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
        header[100..107].copy_from_slice(b"0000644");
        header[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        header[156] = kind;
        header[257..263].copy_from_slice(b"ustar\0");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut out = header;
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    #[tokio::test]
    async fn long_names_pax_paths_and_json_captions_are_read() {
        let long = format!("{}/000001", "d".repeat(120));
        let mut tar = Vec::new();
        tar.extend(member("dir/", b'5', b""));
        tar.extend(member(
            "././@LongLink",
            b'L',
            format!("{long}.jpg\0").as_bytes(),
        ));
        tar.extend(member("truncated-name", b'0', b"JPEGDATA"));
        tar.extend(member(
            "././@LongLink",
            b'L',
            format!("{long}.json\0").as_bytes(),
        ));
        tar.extend(member("cut-too", b'0', br#"{"key":"k1","text":"a cat"}"#));
        tar.extend(member("pax", b'x', b"26 path=other/000002.json\n"));
        tar.extend(member("short", b'0', br#"{"text":"a dog","w":3}"#));
        tar.extend(member("./other/000002.png", b'0', b"PNGDATA"));
        tar.extend([0u8; 2 * BLOCK]);
        let uri = "memory://wds-test/ds/00007.tar";
        store::resolve(uri)
            .expect("uri")
            .write(tar)
            .await
            .expect("put");
        let options = WebDatasetOptions {
            caption_field: Some("text".into()),
        };
        let got = read_webdataset("memory://wds-test/ds", &options)
            .await
            .expect("index");
        let ids: Vec<&str> = got.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["k1", "00007/other/000002"]);
        assert_eq!(got.entries[0].caption.as_deref(), Some("a cat"));
        assert_eq!(got.entries[1].caption.as_deref(), Some("a dog"));
        assert_eq!(got.entries[1].metadata.as_deref(), Some(r#"{"w":3}"#));
        let (tar_uri, start, len) = member_range(&got.entries[0].image)
            .expect("range")
            .expect("member");
        let location = store::resolve(tar_uri).expect("uri");
        let bytes = read_member(&location, start, len).await.expect("read");
        assert_eq!(&bytes[..], b"JPEGDATA");
    }

    #[test]
    fn member_uris_round_trip() {
        let uri = member_uri("s3://b/00001.tar", 1536, 2048, "k 1.jpg");
        assert_eq!(
            member_range(&uri),
            Ok(Some(("s3://b/00001.tar", 1536, 2048)))
        );
        let bad = error_uri("s3://b/00001.tar", "sample k has no image");
        assert_eq!(member_range(&bad), Err("sample k has no image".to_string()));
        assert_eq!(member_range("s3://b/x.jpg"), Ok(None));
    }
}
