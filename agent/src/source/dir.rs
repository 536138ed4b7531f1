//! Standalone source: the Kubernetes YAML a user would `kubectl apply`, read
//! from a directory (`*.yaml`, `*.yml`, `*.json`; multi-document files and
//! `kind: List` are accepted).
//!
//! A document that cannot be used is reported and skipped; the other
//! documents, in that file and in the others, still count.
//!
//! A [`Reader`] remembers what it read, so that re-reading a directory of
//! thousands of objects after a one-document edit parses that document only
//! and hands out the very same `Arc` for every Service and EndpointSlice
//! whose text did not change.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};

use super::slim::{EndpointSlice, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;

use super::Objects;

/// Errors reading the manifest directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory itself cannot be listed.
    #[error("cannot read manifest directory {dir}")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One document (or file) that was skipped, and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}, document {document}: {message}")]
pub struct DocumentError {
    /// The file.
    pub file: PathBuf,
    /// 1-based document number within the file (0: the whole file).
    pub document: usize,
    /// What is wrong.
    pub message: String,
}

/// Result of reading the directory.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads every manifest file in `dir` once, caching nothing (tests and
/// one-shot tools; a loop keeps a [`Reader`]).
pub fn read(dir: &Path) -> Result<(Objects, Vec<DocumentError>)> {
    Reader::default().read(dir)
}

/// Reads the manifest directory again and again, parsing only what changed
/// since the previous read.
#[derive(Debug, Default)]
pub struct Reader {
    files: HashMap<PathBuf, File>,
    /// Keys the chunk digests (a random key per agent).
    keys: RandomState,
}

impl Reader {
    /// Reads every manifest file in `dir` (not recursing), in name order.
    ///
    /// A document whose text is unchanged since the previous read is not
    /// parsed again: its Services and EndpointSlices are the same `Arc`s as
    /// last time, and its problems are reported again.
    pub fn read(&mut self, dir: &Path) -> Result<(Objects, Vec<DocumentError>)> {
        let paths = manifest_files(dir)?;
        // Rebuilt from the files still listed, so removed files drop out.
        let mut previous = std::mem::take(&mut self.files);
        let mut objects = Objects::default();
        let mut errors = Vec::new();
        for path in paths {
            match File::load(&path, previous.remove(&path), &self.keys) {
                Ok(Some(file)) => {
                    collect(&path, &file.chunks, &mut objects, &mut errors);
                    self.files.insert(path, file);
                }
                // A file removed between listing and reading is simply gone.
                Ok(None) => {}
                Err(e) => errors.push(DocumentError {
                    file: path,
                    document: 0,
                    message: e.to_string(),
                }),
            }
        }
        Ok((objects, errors))
    }
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: SystemTime,
    // The status change time and the inode catch rewrites that keep the
    // size and carry the old mtime over (`cp -p`, `rsync -t`, tar): unlike
    // the mtime, a user cannot set them.
    changed: SystemTime,
    inode: (u64, u64),
}

/// How long after its last change a file's stamp is trusted: a write in
/// the same timestamp tick as the previous read may leave the stamp as it
/// was (filesystems with coarse timestamps round to a second or two).
const SETTLE: Duration = Duration::from_secs(2);

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        let changed = u64::try_from(meta.ctime())
            .ok()
            .zip(u32::try_from(meta.ctime_nsec()).ok())
            .map_or(SystemTime::UNIX_EPOCH, |(secs, nanos)| {
                SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
            });
        Self {
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            changed,
            inode: (meta.dev(), meta.ino()),
        }
    }

    fn settled(&self, now: SystemTime) -> bool {
        let old = |t: SystemTime| now.duration_since(t).is_ok_and(|age| age > SETTLE);
        old(self.modified) && old(self.changed)
    }
}

/// One manifest file as last read.
#[derive(Debug)]
struct File {
    stamp: Stamp,
    chunks: Vec<Chunk>,
}

/// What a chunk's text is compared by: its length and a keyed 64-bit hash.
/// Keeping the text instead would hold the whole manifest set in memory
/// (6.6 MiB for 10k Services with 100k endpoints) to spare a hash that
/// two different texts of one length share with odds of 2^-64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Digest {
    len: usize,
    hash: u64,
}

impl Digest {
    fn of(text: &str, keys: &RandomState) -> Self {
        Self {
            len: text.len(),
            hash: keys.hash_one(text),
        }
    }
}

/// A stretch of a file from one `---` line to the next (or from the start
/// of the file to the first one): the unit that is parsed, or not, again.
#[derive(Debug)]
struct Chunk {
    digest: Digest,
    /// 1-based line of the file the chunk starts on.
    first_line: usize,
    /// Shared with the previous version of the file when the text is.
    outcome: Arc<Outcome>,
}

/// What parsing one chunk gave.
#[derive(Debug, Default)]
struct Outcome {
    /// YAML documents in the chunk, to number the documents of the file.
    documents: usize,
    objects: Box<[Object]>,
    errors: Box<[ChunkError]>,
}

#[derive(Debug)]
struct ChunkError {
    /// 0-based document within the chunk.
    document: usize,
    message: String,
    /// The message holds YAML positions, which count from the chunk's start.
    positioned: bool,
}

/// One object of a chunk. Services and EndpointSlices are handed out as
/// they are (the same `Arc` while their text is the same); other kinds are
/// copied into each snapshot.
#[derive(Debug)]
enum Object {
    Service(Arc<Service>),
    Slice(Arc<EndpointSlice>),
    Node(Arc<Node>),
    Pod(Arc<Pod>),
    Namespace(Arc<Namespace>),
    NetworkPolicy(Arc<NetworkPolicy>),
}

impl File {
    /// The file as it is now, reusing what `previous` parsed where the text
    /// is the same. `None`: the file is gone.
    fn load(path: &Path, previous: Option<File>, keys: &RandomState) -> std::io::Result<Option<File>> {
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        // Taken before reading: a write in between changes the stamp, so
        // the next read looks at the file again.
        let stamp = match std::fs::metadata(path) {
            Ok(meta) => Stamp::of(&meta),
            Err(e) if gone(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        match previous {
            Some(previous) if previous.stamp == stamp && stamp.settled(SystemTime::now()) => {
                Ok(Some(previous))
            }
            previous => Self::reparse(path, stamp, previous.as_ref(), keys),
        }
    }

    fn reparse(
        path: &Path,
        stamp: Stamp,
        previous: Option<&File>,
        keys: &RandomState,
    ) -> std::io::Result<Option<File>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let chunks = parse_chunks(&text, previous, keys);
        Ok(Some(File { stamp, chunks }))
    }

    fn chunk_digest(&self, index: usize) -> Option<Digest> {
        self.chunks.get(index).map(|c| c.digest)
    }
}

/// Splits `text` into chunks, taking the outcome of each chunk whose text
/// `previous` had too, and parsing the others.
fn parse_chunks(text: &str, previous: Option<&File>, keys: &RandomState) -> Vec<Chunk> {
    let mut lookup: Option<HashMap<Digest, usize>> = None;
    // Where the previous chunk was found: after an insertion or removal,
    // the chunks that follow are shifted by the same amount.
    let mut next_old = 0;
    split(text)
        .into_iter()
        .enumerate()
        .map(|(i, (range, first_line))| {
            let body = &text[range];
            let digest = Digest::of(body, keys);
            let old = previous.and_then(|previous| {
                [i, next_old]
                    .into_iter()
                    .find(|&j| previous.chunk_digest(j) == Some(digest))
                    .or_else(|| {
                        lookup
                            .get_or_insert_with(|| {
                                let mut map = HashMap::with_capacity(previous.chunks.len());
                                for (j, chunk) in previous.chunks.iter().enumerate() {
                                    map.entry(chunk.digest).or_insert(j);
                                }
                                map
                            })
                            .get(&digest)
                            .copied()
                    })
                    .map(|j| (j, &previous.chunks[j]))
            });
            let outcome = match old {
                Some((j, chunk)) => {
                    next_old = j + 1;
                    Arc::clone(&chunk.outcome)
                }
                None => Arc::new(parse_chunk(body)),
            };
            Chunk {
                digest,
                first_line,
                outcome,
            }
        })
        .collect()
}

/// The chunks of `text` with the line each starts on. A line starting with
/// `---` and then whitespace or nothing is a document marker wherever it is
/// (YAML forbids it inside content), so cutting there never splits a
/// document.
///
/// Text before the first marker stays with it unless it holds a document:
/// comments and directives (`%YAML`) alone would be a chunk of no document,
/// which YAML counts as one (throwing the document numbers off by one) and
/// which would lose the directives' effect.
fn split(text: &str) -> Vec<(Range<usize>, usize)> {
    let is_marker = |line: &str| {
        line.strip_prefix("---")
            .is_some_and(|rest| rest.chars().next().is_none_or(char::is_whitespace))
    };
    let is_content = |line: &str| {
        let line = line.trim_start();
        !(line.is_empty() || line.starts_with('#') || line.starts_with('%'))
    };
    let mut chunks = Vec::new();
    let (mut start, mut start_line) = (0, 1);
    let (mut line_start, mut line) = (0, 1);
    let mut prefix_has_content = false;
    loop {
        let rest = &text[line_start..];
        let end = rest.find('\n');
        if is_marker(rest) {
            if line_start > start && (start > 0 || prefix_has_content) {
                chunks.push((start..line_start, start_line));
                (start, start_line) = (line_start, line);
            }
            // Whatever was before is settled now.
            prefix_has_content = true;
        } else if !prefix_has_content {
            prefix_has_content = is_content(&rest[..end.unwrap_or(rest.len())]);
        }
        match end {
            Some(end) => (line_start, line) = (line_start + end + 1, line + 1),
            None => break,
        }
    }
    if start < text.len() {
        chunks.push((start..text.len(), start_line));
    }
    chunks
}

/// Parses the documents of one chunk.
fn parse_chunk(text: &str) -> Outcome {
    let mut documents = 0;
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let index = documents;
        documents += 1;
        match serde_yaml::Value::deserialize(document) {
            Ok(serde_yaml::Value::Null) => {}
            Ok(value) => {
                if let Err(message) = add_object(value, &mut objects) {
                    errors.push(ChunkError {
                        document: index,
                        message,
                        positioned: false,
                    });
                }
            }
            Err(e) => {
                errors.push(ChunkError {
                    document: index,
                    positioned: e.location().is_some(),
                    message: e.to_string(),
                });
                // After a syntax error the YAML stream cannot be resumed;
                // the next chunk starts a fresh one.
                break;
            }
        }
    }
    Outcome {
        documents,
        objects: objects.into_boxed_slice(),
        errors: errors.into_boxed_slice(),
    }
}

/// Adds the objects and problems of one file's `chunks`, numbering the
/// documents over the whole file.
fn collect(path: &Path, chunks: &[Chunk], objects: &mut Objects, errors: &mut Vec<DocumentError>) {
    let mut documents = 0;
    for chunk in chunks {
        let outcome = &chunk.outcome;
        for error in &outcome.errors {
            let message = if error.positioned && chunk.first_line > 1 {
                format!(
                    "{} (line 1 there is line {} of the file)",
                    error.message, chunk.first_line
                )
            } else {
                error.message.clone()
            };
            errors.push(DocumentError {
                file: path.to_owned(),
                document: documents + error.document + 1,
                message,
            });
        }
        for object in &outcome.objects {
            match object {
                Object::Service(o) => objects.services.push(Arc::clone(o)),
                Object::Slice(o) => objects.slices.push(Arc::clone(o)),
                Object::Node(o) => objects.nodes.push(Arc::clone(o)),
                Object::Pod(o) => objects.pods.push(Arc::clone(o)),
                Object::Namespace(o) => objects.namespaces.push(Arc::clone(o)),
                Object::NetworkPolicy(o) => objects.network_policies.push(Arc::clone(o)),
            }
        }
        documents += outcome.documents;
    }
}

/// A cheap summary of the directory (names, sizes, modification times) that
/// changes whenever a file is added, removed or rewritten. Polling this keeps
/// the agent independent of inotify, which misses changes on some volume
/// types (ConfigMap symlink swaps, network filesystems).
pub fn fingerprint(dir: &Path) -> Result<Vec<(PathBuf, u64, SystemTime)>> {
    let mut out = Vec::new();
    for file in manifest_files(dir)? {
        if let Ok(meta) = std::fs::metadata(&file) {
            out.push((
                file,
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
        }
    }
    Ok(out)
}

fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read_dir = |source| Error::ReadDir {
        dir: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        let is_manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        // Editors and `kubectl`-style tools write hidden temp files first.
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if is_manifest && !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Adds one object (or the items of a `List`) by `apiVersion`/`kind`.
fn add_object(value: serde_yaml::Value, objects: &mut Vec<Object>) -> std::result::Result<(), String> {
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Service") => objects.push(Object::Service(Arc::new(typed(value, "Service")?))),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            objects.push(Object::Slice(Arc::new(typed(value, "EndpointSlice")?)));
        }
        ("v1", "Node") => objects.push(Object::Node(Arc::new(typed(value, "Node")?))),
        ("v1", "Pod") => objects.push(Object::Pod(Arc::new(typed(value, "Pod")?))),
        ("v1", "Namespace") => objects.push(Object::Namespace(Arc::new(typed(value, "Namespace")?))),
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            objects.push(Object::NetworkPolicy(Arc::new(typed(value, "NetworkPolicy")?)));
        }
        ("v1", "List") => {
            let items = value
                .get("items")
                .and_then(serde_yaml::Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            let mut problems = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                if let Err(e) = add_object(item, objects) {
                    problems.push(format!("item {}: {e}", i + 1));
                }
            }
            if !problems.is_empty() {
                return Err(problems.join("; "));
            }
        }
        (_, "") => return Err("not a Kubernetes object: no kind".into()),
        // Other kinds (Deployments, ConfigMaps, ...) may share the
        // directory; the agent has no use for them.
        _ => {}
    }
    Ok(())
}

/// The object, trimmed as the Kubernetes source trims what it stores.
fn typed<T>(value: serde_yaml::Value, kind: &str) -> std::result::Result<T, String>
where
    T: serde::de::DeserializeOwned + super::Trim,
{
    let mut object: T = serde_yaml::from_value(value).map_err(|e| format!("invalid {kind}: {e}"))?;
    object.trim();
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Objects, Vec<DocumentError>) {
        let mut objects = Objects::default();
        let mut errors = Vec::new();
        collect(
            Path::new("t.yaml"),
            &parse_chunks(text, None, &RandomState::new()),
            &mut objects,
            &mut errors,
        );
        (objects, errors)
    }

    /// A scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("weir-dir-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, file: &str, text: &str) {
            std::fs::write(self.0.join(file), text).unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn service(name: &str, port: u16) -> String {
        format!(
            "---\n{{apiVersion: v1, kind: Service, metadata: {{name: {name}}}, spec: {{ports: [{{port: {port}}}]}}}}\n"
        )
    }

    fn slice(name: &str) -> String {
        format!(
            "---\n{{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {{name: {name}}}, \
             addressType: IPv4, endpoints: [{{addresses: [10.0.0.1]}}]}}\n"
        )
    }

    fn names(objects: &Objects) -> Vec<&str> {
        objects
            .services
            .iter()
            .map(|s| s.metadata.name.as_deref().unwrap_or(""))
            .collect()
    }

    fn port(service: &Service) -> i32 {
        service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port
    }

    #[test]
    fn multi_document_files_and_lists_are_read() {
        let (objects, errors) = parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n\
             - {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s}, addressType: IPv4, endpoints: []}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(objects.services.len(), 2);
        assert_eq!(objects.slices.len(), 1);
    }

    #[test]
    fn a_malformed_document_is_reported_and_the_others_kept() {
        let (objects, errors) = parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: banana}]}\n---\n\
             just a string\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: ok}\n",
        );
        assert_eq!(objects.services.len(), 1);
        assert_eq!(objects.services[0].metadata.name.as_deref(), Some("ok"));
        assert_eq!(errors.iter().map(|e| e.document).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn broken_yaml_loses_only_its_document() {
        let (objects, errors) = parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n{ [ :\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: b}\n",
        );
        assert_eq!(names(&objects), ["a", "b"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].document, 2);
        // YAML positions count from the chunk; the message says where it is.
        assert!(
            errors[0].message.contains("line 4 of the file"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn documents_are_numbered_as_in_one_yaml_stream() {
        let texts = [
            "# comment\n---\na: 1\n",
            "# comment\n\n%YAML 1.2\n---\na: 1\n---\nb: 2\n",
            "a: 1\n---\nb: 2\n",
            "---\na: 1\n---\n---\nb: 2\n",
            "a: 1\n...\n---\nb: 2\n--- \nc: 3",
            "a: 1\n...\n# c\n--- b\n...\n---\nc: 3\n---",
            "--- {a: 1}\n---\t# marker with a comment\nb: 2\n----: 3\n---x: 4\n",
            "a: |\n  ---\n  text\n---\nb: 2\r\n---\r\nc: 3\r\n",
        ];
        for text in texts {
            let mut whole = 0;
            for document in serde_yaml::Deserializer::from_str(text) {
                whole += 1;
                // After an error the stream yields it forever.
                serde_yaml::Value::deserialize(document).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            }
            let chunks = parse_chunks(text, None, &RandomState::new());
            let syntax_errors = chunks
                .iter()
                .flat_map(|c| &c.outcome.errors)
                .filter(|e| e.positioned);
            assert_eq!(syntax_errors.count(), 0, "{text:?}");
            let documents: usize = chunks.iter().map(|c| c.outcome.documents).sum();
            assert_eq!(documents, whole, "{text:?}");
            let ranges = split(text);
            let rejoined: String = ranges.iter().map(|(range, _)| &text[range.clone()]).collect();
            assert_eq!(rejoined, text);
            for (range, first_line) in &ranges {
                let lines = text[..range.start].matches('\n').count();
                assert_eq!(*first_line, lines + 1, "{text:?}");
            }
        }
    }

    #[test]
    fn unchanged_documents_keep_their_objects_across_rewrites() {
        let scratch = Scratch::new("unchanged");
        let mut reader = Reader::default();
        let all = |first: u16| {
            let mut text = service("a", first) + &slice("a-1");
            for i in 0..20 {
                text += &service(&format!("s{i}"), 80);
                text += &slice(&format!("s{i}-1"));
            }
            text
        };
        scratch.write("objects.yaml", &all(80));
        let (before, errors) = reader.read(&scratch.0).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((before.services.len(), before.slices.len()), (21, 21));

        // One document changed: it is parsed again, the others are kept.
        scratch.write("objects.yaml", &all(8080));
        let (after, errors) = reader.read(&scratch.0).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(port(&after.services[0]), 8080);
        assert!(!Arc::ptr_eq(&before.services[0], &after.services[0]));
        assert!(
            before.services[1..]
                .iter()
                .zip(&after.services[1..])
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );
        assert!(
            before
                .slices
                .iter()
                .zip(&after.slices)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );

        // Inserting a document shifts the others, which are still kept.
        scratch.write("objects.yaml", &(service("new", 1) + &all(8080)));
        let (inserted, errors) = reader.read(&scratch.0).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(names(&inserted)[..2], ["new", "a"]);
        assert!(
            after
                .services
                .iter()
                .zip(&inserted.services[1..])
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );
        assert!(
            after
                .slices
                .iter()
                .zip(&inserted.slices)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );

        // Nothing changed at all.
        let (again, _) = reader.read(&scratch.0).unwrap();
        assert!(
            inserted
                .services
                .iter()
                .zip(&again.services)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );
    }

    #[test]
    fn files_are_read_in_name_order_and_removed_files_drop_out() {
        let scratch = Scratch::new("removed");
        let mut reader = Reader::default();
        scratch.write("b.yaml", &service("b", 80));
        scratch.write("a.yaml", &(service("a", 80) + &slice("a-1")));
        scratch.write(".hidden.yaml", &service("hidden", 80));
        let (objects, _) = reader.read(&scratch.0).unwrap();
        assert_eq!(names(&objects), ["a", "b"]);
        assert_eq!(objects.slices.len(), 1);

        std::fs::remove_file(scratch.0.join("a.yaml")).unwrap();
        let (objects, errors) = reader.read(&scratch.0).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(names(&objects), ["b"]);
        assert_eq!(objects.slices.len(), 0);
        assert_eq!(reader.files.len(), 1);
    }

    #[test]
    fn a_problem_is_reported_on_every_read_with_its_document_number() {
        let scratch = Scratch::new("errors");
        let mut reader = Reader::default();
        let bad =
            "---\n{apiVersion: v1, kind: Service, metadata: {name: bad}, spec: {ports: [{port: banana}]}}\n";
        scratch.write("objects.yaml", &(service("a", 80) + bad + &service("b", 80)));
        for _ in 0..2 {
            let (objects, errors) = reader.read(&scratch.0).unwrap();
            assert_eq!(names(&objects), ["a", "b"]);
            assert_eq!(errors.iter().map(|e| e.document).collect::<Vec<_>>(), [2]);
        }

        // A document inserted before it moves it to number 3; it is not
        // parsed again, but counted again.
        scratch.write(
            "objects.yaml",
            &(service("new", 80) + &service("a", 80) + bad + &service("b", 80)),
        );
        let (objects, errors) = reader.read(&scratch.0).unwrap();
        assert_eq!(names(&objects), ["new", "a", "b"]);
        assert_eq!(errors.iter().map(|e| e.document).collect::<Vec<_>>(), [3]);
        assert!(errors[0].message.contains("banana"), "{}", errors[0].message);
    }
}
