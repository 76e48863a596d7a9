//! Mutation fuzzing of `validate_blob` against `fdt` 0.1.5: blobs derived from the QEMU
//! `virt` and FVP fixtures by bit flips, byte sets, truncations, header rewrites, token and
//! property rewrites and token splices. `validate_blob` must never panic, and every blob it
//! accepts must go through `fdt` and board-config (`common::fdtblob::exercise`) without a
//! panic.
//!
//! Each case is derived from its number alone (fixed-seed xorshift), so a failure names the
//! case and its mutations; `BLOB_FUZZ_CASE=<n>` replays that one case.

mod common;

use board_config::dt::validate_blob;
use common::dtb;
use common::fdtblob::*;
use std::collections::BTreeMap;
use std::panic::catch_unwind;

/// Cases run (over both fixtures).
const CASES: u64 = 100_000;
const SEED: u64 = 0x5eed_d7b0_c0ff_ee00;
/// The header's size: splices need one.
const HEADER: usize = 40;

/// xorshift64* (Vigna), seeded per case through splitmix64.
struct Rng(u64);

impl Rng {
    fn for_case(case: u64) -> Self {
        let mut z = SEED ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
}

/// A fixture with what the mutations aim at.
struct Base {
    name: &'static str,
    blob: Vec<u8>,
    /// Offsets of its tokens.
    tokens: Vec<usize>,
    /// Offsets of its `FDT_PROP` tokens.
    props: Vec<usize>,
    /// Its header's offsets and sizes.
    sizes: Vec<u32>,
}

impl Base {
    fn new(name: &'static str) -> Self {
        let blob = dtb(name);
        let all = tokens(&blob);
        Self {
            name,
            tokens: all.iter().map(|(at, _)| *at).collect(),
            props: all
                .iter()
                .filter(|(_, t)| matches!(t, Tok::Prop { .. }))
                .map(|(at, _)| *at)
                .collect(),
            sizes: [
                TOTALSIZE,
                OFF_DT_STRUCT,
                OFF_DT_STRINGS,
                SIZE_DT_STRINGS,
                SIZE_DT_STRUCT,
            ]
            .map(|f| get32(&blob, f))
            .to_vec(),
            blob,
        }
    }
}

/// Values header fields and lengths are rewritten to: small, huge, random, near the
/// original, and on the edges of the blob's blocks (`sizes`).
fn edge(rng: &mut Rng, orig: u32, len: usize, sizes: &[u32]) -> u32 {
    let len = len as u32;
    match rng.below(18) {
        0 => 0,
        1 => 1,
        2 => 3,
        3 => 4,
        4 => 0x27,
        5 => 0x28,
        6 => len,
        7 => len.wrapping_sub(1),
        8 => len + 1,
        9 => orig.wrapping_add(4),
        10 => orig.wrapping_sub(4),
        11 => orig.wrapping_add(1),
        12 => u32::MAX,
        13 => 0x8000_0000,
        14 => rng.below(len as usize + 64) as u32,
        15 | 16 => {
            let size = rng.pick(sizes);
            size.wrapping_add(rng.pick(&[0, 1, 4, u32::MAX, u32::MAX - 3]))
        }
        _ => rng.next() as u32,
    }
}

/// One mutation of `b`, described in `log`.
fn mutate(rng: &mut Rng, base: &Base, b: &mut Vec<u8>, log: &mut String) {
    let len = b.len();
    let struct_start = get32(&base.blob, OFF_DT_STRUCT) as usize;
    let token = |rng: &mut Rng| rng.pick(&base.tokens).min(len.saturating_sub(4));
    match rng.below(12) {
        0 => {
            let at = rng.below(len);
            let bit = rng.below(8);
            b[at] ^= 1 << bit;
            log.push_str(&format!("flip {at:#x} bit {bit}; "));
        }
        2 => {
            let at = rng.below(len);
            let r = rng.next() as u8;
            let v = rng.pick(&[0x00, 0xff, 0x7f, r]);
            b[at] = v;
            log.push_str(&format!("set {at:#x} = {v:#04x}; "));
        }
        3 => {
            let keep = rng.below(len);
            b.truncate(keep);
            let fix = keep >= 40 && rng.below(2) == 0;
            if fix {
                set32(b, TOTALSIZE, keep as u32);
            }
            log.push_str(&format!("truncate to {keep:#x} (totalsize fixed: {fix}); "));
        }
        4 | 5 => {
            let field = rng.pick(&FIELDS);
            if field + 4 <= b.len() {
                let v = edge(rng, get32(b, field), len, &base.sizes);
                set32(b, field, v);
                log.push_str(&format!("header {field:#x} = {v:#x}; "));
            }
        }
        6 => {
            let at = token(rng);
            let r = rng.next() as u32;
            let v = rng.pick(&[BEGIN_NODE, END_NODE, PROP, NOP, END, 5, 0, r]);
            set32(b, at, v);
            log.push_str(&format!("token {at:#x} = {v:#x}; "));
        }
        7 | 8 => {
            let at = rng.pick(&base.props);
            let (what, field) = rng.pick(&[("len", at + 4), ("nameoff", at + 8)]);
            if field + 4 <= b.len() {
                let v = edge(rng, get32(b, field), len, &base.sizes);
                set32(b, field, v);
                log.push_str(&format!("prop {at:#x} {what} = {v:#x}; "));
            }
        }
        9 => {
            // Move a run of whole tokens elsewhere (or drop it): misnested but plausible.
            let (a, c) = (token(rng), token(rng));
            let (from, to) = (a.min(c), a.max(c));
            let run = b[from..to.min(len)].to_vec();
            let at = token(rng);
            let dropped = rng.below(2) == 0;
            let spliced = if dropped {
                splice(b, from, run.len(), &[])
            } else if at >= struct_start {
                splice(b, at, 0, &run)
            } else {
                b.clone()
            };
            *b = spliced;
            log.push_str(&format!(
                "splice {from:#x}..{to:#x} {}; ",
                if dropped {
                    "dropped".to_string()
                } else {
                    format!("copied to {at:#x}")
                }
            ));
        }
        1 | 10 => {
            let at = token(rng);
            let insert = match rng.below(4) {
                0 => words(&[NOP]),
                1 => words(&[END_NODE]),
                2 => [words(&[BEGIN_NODE]), name_bytes("x")].concat(),
                _ => prop_bytes(rng.below(64) as u32, &[0, 0, 0, 2]),
            };
            if at >= struct_start {
                *b = splice(b, at, 0, &insert);
                log.push_str(&format!("insert {insert:02x?} at {at:#x}; "));
            }
        }
        _ => {
            let strings = get32(&base.blob, OFF_DT_STRINGS) as usize;
            if strings < len {
                let at = strings + rng.below(len - strings);
                let r = rng.next() as u8;
                let v = rng.pick(&[0, b'/', 0xff, 0xc3, r]);
                b[at] = v;
                log.push_str(&format!("string byte {at:#x} = {v:#04x}; "));
            }
        }
    }
}

/// Case `case`: its blob and what was done to it.
fn case(bases: &[Base], case: u64) -> (Vec<u8>, String) {
    let mut rng = Rng::for_case(case);
    let base = &bases[rng.below(bases.len())];
    let mut b = base.blob.clone();
    let mut log = format!("{}: ", base.name);
    for _ in 0..1 + rng.below(3).saturating_sub(1) {
        if b.len() < HEADER {
            break;
        }
        mutate(&mut rng, base, &mut b, &mut log);
    }
    (b, log)
}

/// What a run of cases found.
#[derive(Default)]
struct Tally {
    accepted: u64,
    exercised_all: u64,
    rejected: BTreeMap<String, u64>,
    /// The first case that panicked, and how.
    failure: Option<(u64, String)>,
}

/// Every `EXERCISE_ALL_EVERY`th accepted case also gets `exercise_all`.
const EXERCISE_ALL_EVERY: u64 = 32;

fn run(bases: &[Base], cases: impl Iterator<Item = u64>) -> Tally {
    let mut t = Tally::default();
    for n in cases {
        let (blob, log) = case(bases, n);
        let verdict = match catch_unwind(|| validate_blob(&blob)) {
            Err(e) => Err(format!("validate_blob panicked: {}", panic_text(&*e))),
            Ok(Err(e)) => {
                let kind = format!("{:?}", e.kind);
                let kind = kind.split([' ', '{']).next().unwrap_or("").to_string();
                *t.rejected.entry(kind).or_default() += 1;
                Ok(())
            }
            Ok(Ok(())) => {
                t.accepted += 1;
                let all = t.accepted % EXERCISE_ALL_EVERY == 0;
                t.exercised_all += u64::from(all);
                catch_unwind(|| {
                    if all {
                        exercise_all(&blob)
                    } else {
                        exercise(&blob)
                    }
                })
                .map_err(|e| format!("accepted, then panicked: {}", panic_text(&*e)))
            }
        };
        if let Err(why) = verdict {
            t.failure = Some((
                n,
                format!(
                    "case {n} ({log}): {why}\nreplay: BLOB_FUZZ_CASE={n} cargo test -p \
                     board-config --test blob_fuzz"
                ),
            ));
            break;
        }
    }
    t
}

#[test]
fn no_blob_validate_blob_accepts_makes_fdt_panic() {
    let bases = [Base::new("qemu-virt.dts"), Base::new("fvp-base-revc.dts")];
    let only = std::env::var("BLOB_FUZZ_CASE")
        .ok()
        .map(|s| s.parse::<u64>().unwrap());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let tallies: Vec<Tally> = match only {
        Some(n) => vec![run(&bases, n..n + 1)],
        None => std::thread::scope(|s| {
            let bases = &bases;
            let handles: Vec<_> = (0..workers)
                .map(|w| s.spawn(move || run(bases, (w..CASES).step_by(workers as usize))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        }),
    };
    std::panic::set_hook(quiet);
    if let Some((_, f)) = tallies.iter().filter_map(|t| t.failure.as_ref()).min() {
        panic!("{f}");
    }
    let total = only.map_or(CASES, |_| 1);
    let accepted: u64 = tallies.iter().map(|t| t.accepted).sum();
    let all: u64 = tallies.iter().map(|t| t.exercised_all).sum();
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in tallies.iter().flat_map(|t| &t.rejected) {
        *rejected.entry(k.clone()).or_default() += v;
    }
    println!(
        "{total} cases: {accepted} accepted and exercised ({all} with every accessor), {} \
         rejected: {rejected:?}",
        total - accepted
    );
    if only.is_none() {
        // The mutations must reach both verdicts and the structure checks.
        assert!(accepted > total / 10, "only {accepted} accepted");
        for kind in [
            "NameOffsetPastStrings",
            "UnknownToken",
            "PropertyPastEnd",
            "NopInsideNode",
        ] {
            assert!(rejected.contains_key(kind), "no {kind} in {rejected:?}");
        }
    }
}
