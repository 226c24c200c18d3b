//! Listings of prefixes, memoized per process, and `stat` answered from them.
//!
//! A prefix is listed with one `list_with_delimiter` (`/`), which follows continuation tokens
//! itself. object_store fails the whole call when any page fails, so a listing here is either
//! complete or an error naming the prefix: `Listing { complete: false }` is never produced
//! (there is no partial result to return); the caller that walks a tree reports that prefix
//! as incomplete and keeps going.
//!
//! Each listing is kept until [`forget`] (ckpt's commands list a bucket once per run; `ckpt
//! serve` forgets before each new catalog), so `stat` of every entry of a walked prefix, and of
//! the prefix itself, costs nothing more. Objects become [`Kind::File`] entries with their
//! identity (size, Last-Modified, FNV-1a of the ETag or version id, the ETag); sub-prefixes
//! become [`Kind::Dir`]. Folder markers (a key equal to the prefix, or ending in `/`) are
//! skipped. A name that is both an object and a prefix appears twice, the object first.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;
use object_store::path::Path as OsPath;

use super::http::traced;
use super::object::{identity_of, os_path, request_error};
use super::{rt, store};
use crate::{DirEntry, Identity, Kind, Listing, RemoteUrl, Stat};

/// A prefix's listing, and whether the prefix exists at all: some key starts with it, or a
/// folder marker (`prefix/`) names it. The bucket's root always exists once listed.
#[derive(Debug)]
struct Listed {
    listing: Listing,
    exists: bool,
}

static MEMO: Mutex<Option<HashMap<RemoteUrl, Arc<Listed>>>> = Mutex::new(None);

fn memo_get(url: &RemoteUrl) -> Option<Arc<Listed>> {
    MEMO.lock().ok()?.as_ref()?.get(url).cloned()
}

fn memo_put(url: &RemoteUrl, l: Arc<Listed>) {
    if let Ok(mut g) = MEMO.lock() {
        g.get_or_insert_with(HashMap::new).insert(url.clone(), l);
    }
}

/// Forget every memoized listing.
pub fn forget() {
    if let Ok(mut g) = MEMO.lock() {
        *g = None;
    }
}

/// The entries of the prefix `url` (see the module docs). A prefix no key starts with is
/// `NotFound`, as a missing local folder is (S3 would answer an empty listing).
pub fn read_dir(url: &RemoteUrl) -> io::Result<Listing> {
    let l = listing(url)?;
    if !l.exists {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{url}: no such prefix (no key starts with {}/)", url.key),
        ));
    }
    Ok(l.listing.clone())
}

fn listing(url: &RemoteUrl) -> io::Result<Arc<Listed>> {
    if let Some(l) = memo_get(url) {
        return Ok(l);
    }
    let l = Arc::new(list(url)?);
    memo_put(url, l.clone());
    Ok(l)
}

fn list(url: &RemoteUrl) -> io::Result<Listed> {
    let store: Arc<dyn ObjectStore> = store::store_for(url)?;
    let prefix: Option<OsPath> = if url.key.is_empty() {
        None
    } else {
        Some(os_path(url)?)
    };
    let p2 = prefix.clone();
    let (res, trace) = rt::run(async move {
        let _permit = rt::permit().await;
        Ok(traced(async move { store.list_with_delimiter(p2.as_ref()).await }).await)
    })?;
    let request = if url.key.is_empty() {
        "LIST".to_owned()
    } else {
        format!("LIST {}/", url.key)
    };
    let res = res.map_err(|e| request_error(url, request, &e, &trace, None))?;
    let mut entries = Vec::new();
    let mut marker = false;
    let under = |loc: &OsPath| -> Option<String> {
        let mut parts = match &prefix {
            Some(p) => loc.prefix_match(p)?,
            None => loc.prefix_match(&OsPath::default())?,
        };
        let name = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let name = name.as_ref().to_owned();
        (!name.is_empty() && !name.ends_with('/')).then_some(name)
    };
    for o in &res.objects {
        let Some(name) = under(&o.location) else {
            marker |= prefix.as_ref() == Some(&o.location);
            continue;
        };
        entries.push(DirEntry {
            path: url.child(&name).to_path(),
            kind: Kind::File,
            symlink: false,
            identity: Some(identity_of(o)),
        });
    }
    for p in &res.common_prefixes {
        let Some(name) = under(p) else { continue };
        entries.push(DirEntry {
            path: url.child(&name).to_path(),
            kind: Kind::Dir,
            symlink: false,
            identity: None,
        });
    }
    entries.sort_by(|a, b| {
        a.path
            .cmp(&b.path)
            .then_with(|| (a.kind == Kind::Dir).cmp(&(b.kind == Kind::Dir)))
    });
    Ok(Listed {
        exists: url.key.is_empty() || marker || !entries.is_empty(),
        listing: Listing {
            entries,
            complete: true,
        },
    })
}

/// What `url`'s memoized parent listing says of it, without any request.
pub fn memoized_entry(url: &RemoteUrl) -> Option<(Kind, Option<Identity>)> {
    let parent = url.parent()?;
    let l = memo_get(&parent)?;
    find(&l.listing, url)
}

fn find(l: &Listing, url: &RemoteUrl) -> Option<(Kind, Option<Identity>)> {
    let path = url.to_path();
    let mut dir = None;
    for e in l.entries.iter().filter(|e| e.path == path) {
        if e.kind == Kind::File {
            return Some((Kind::File, e.identity.clone()));
        }
        dir = Some((e.kind, e.identity.clone()));
    }
    dir
}

/// What `url` is, from its parent's listing (see the module docs); the bucket's root is a
/// prefix without a request.
pub fn stat(url: &RemoteUrl) -> io::Result<Stat> {
    let Some(parent) = url.parent() else {
        return Ok(Stat {
            kind: Kind::Dir,
            identity: Identity::default(),
        });
    };
    let l = listing(&parent)?;
    match find(&l.listing, url) {
        Some((Kind::File, id)) => Ok(Stat {
            kind: Kind::File,
            identity: id.unwrap_or_default(),
        }),
        Some((kind, _)) => Ok(Stat {
            kind,
            identity: Identity::default(),
        }),
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{url}: no such object or prefix"),
        )),
    }
}
