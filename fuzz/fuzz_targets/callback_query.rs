//! `providers::CallbackParams::parse`, the provider callback's query: no
//! panic on any query; at most 32 parameters are kept; `get` gives the
//! first value of a name among those (a parameter set once is read as set,
//! and a second copy appended by someone else cannot replace it); `Debug`
//! shows names only, never a value (codes and tokens travel here).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::providers::CallbackParams;

/// A value no input is expected to hold (the property is skipped if it does).
const MARKER: &str = "c0de-SeNt-0nce-7f3a";

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        let _ = CallbackParams::parse(Some(&String::from_utf8_lossy(data)));
        return;
    };
    let params = CallbackParams::parse(Some(query));

    // The reference reading: the first 32 pairs, first value of a name wins.
    let all: Vec<(String, String)> = url::form_urlencoded::parse(data)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let kept = &all[..all.len().min(32)];
    for (name, _) in &all {
        let first = kept
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        assert_eq!(params.get(name), first, "{name:?}");
    }
    // Nothing that was not sent.
    if !all.iter().any(|(k, _)| k == "code") {
        assert_eq!(params.get("code"), None);
    }
    assert_eq!(CallbackParams::parse(None).get(""), None);

    if query.contains(MARKER)
        || all
            .iter()
            .any(|(k, v)| k.contains(MARKER) || v.contains(MARKER))
    {
        return;
    }
    // Set once, up front: read as set whatever follows; the value is never
    // shown by Debug.
    let front = format!("code={MARKER}&{query}");
    let p = CallbackParams::parse(Some(&front));
    assert_eq!(p.get("code"), Some(MARKER));
    let shown = format!("{p:?}");
    assert!(!shown.contains(MARKER), "Debug shows a value: {shown}");
    // Set once at the end: read as set when it is among the first 32 pairs
    // and the name was not sent before; never read as the 33rd.
    let back = format!("{query}&code={MARKER}");
    let p = CallbackParams::parse(Some(&back));
    let earlier = kept
        .iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.as_str());
    let expected = match earlier {
        Some(v) => Some(v),
        None if all.len() < 32 => Some(MARKER),
        None => None,
    };
    assert_eq!(p.get("code"), expected);
});
