//! Example: print a market's snapshot, the market list or the writer's state as JSON.
//!
//! ldc-read list GROUP
//! ldc-read snapshot GROUP SYMBOL [--allow-out-of-sync]
//! ldc-read info GROUP
//! ldc-read wait GROUP SYMBOL TIMEOUT_MS      (prints whether the slot changed in time)
//! ldc-read repeat GROUP SYMBOL COUNT         (COUNT snapshots from one Reader, one JSON per line,
//!                                             out-of-sync ones included)
//! ldc-read watch GROUP SYMBOL                (one read per line of stdin, from one Reader: prints
//!                                             {"result", "update_id", "status"} per line)
//! ldc-read spin GROUP SYMBOL MS              (reads as fast as it can for MS ms; per data cycle
//!                                             update_id / 10^9, the count of reads accepted live and
//!                                             in sync and the CLOCK_MONOTONIC start times of the
//!                                             last 256 of them; stops early once the
//!                                             segment says STOPPED)
//!
//! Exit status: 0 ok, 2 usage, 3 no segment, 4 layout (magic/version/geometry/truncated),
//! 5 market not found, 6 out of sync, 7 writer dead or stopped, 8 contention, 1 anything else.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use ldc_reader::{monotonic_ns, Error, Level, Liveness, ReadOptions, Reader, Snapshot};

/// update_id / CYCLE is the writer generation a spin counts reads of (tests/test_shm_takeover.py).
const CYCLE: i64 = 1_000_000_000;
const SPIN_TAIL: usize = 256;

const USAGE: &str = "usage: ldc-read list GROUP | snapshot GROUP SYMBOL [--allow-out-of-sync] \
                     | info GROUP | wait GROUP SYMBOL TIMEOUT_MS | repeat GROUP SYMBOL COUNT \
                     | watch GROUP SYMBOL | spin GROUP SYMBOL MS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["list", group] => list(group),
        ["snapshot", group, symbol] => snapshot(group, symbol, false),
        ["snapshot", group, symbol, "--allow-out-of-sync"] => snapshot(group, symbol, true),
        ["info", group] => info(group),
        ["wait", group, symbol, ms] => match ms.parse::<u64>() {
            Ok(ms) => wait(group, symbol, Duration::from_millis(ms)),
            Err(_) => return usage(),
        },
        ["repeat", group, symbol, count] => match count.parse::<u64>() {
            Ok(count) => repeat(group, symbol, count),
            Err(_) => return usage(),
        },
        ["watch", group, symbol] => watch(group, symbol),
        ["spin", group, symbol, ms] => match ms.parse::<u64>() {
            Ok(ms) => spin(group, symbol, Duration::from_millis(ms)),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ldc-read: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn exit_code(e: &Error) -> u8 {
    match e {
        Error::NoSegment { .. } | Error::InvalidGroup { .. } => 3,
        Error::TooSmall { .. }
        | Error::NotReady { .. }
        | Error::BadMagic { .. }
        | Error::Version { .. }
        | Error::Endian { .. }
        | Error::Geometry { .. }
        | Error::Truncated { .. } => 4,
        Error::MarketNotFound { .. } => 5,
        Error::OutOfSync { .. } => 6,
        Error::WriterDead { .. } => 7,
        Error::Contention { .. } => 8,
        _ => 1,
    }
}

fn list(group: &str) -> Result<String, Error> {
    let mut r = Reader::attach(group)?;
    let items: Vec<String> = r
        .markets()?
        .iter()
        .map(|m| {
            format!(
                "{{\"symbol\":{},\"slot\":{},\"gen\":{}}}",
                js(&m.symbol),
                m.slot,
                m.gen
            )
        })
        .collect();
    Ok(format!(
        "{{\"group\":{},\"markets\":[{}]}}",
        js(group),
        items.join(",")
    ))
}

fn snapshot(group: &str, symbol: &str, allow: bool) -> Result<String, Error> {
    let mut r = Reader::attach(group)?;
    let s = r.snapshot(
        symbol,
        ReadOptions {
            allow_out_of_sync: allow,
        },
    )?;
    Ok(snapshot_json(&s))
}

fn info(group: &str) -> Result<String, Error> {
    let mut r = Reader::attach(group)?;
    let g = r.geometry().clone();
    let w = r.writer_info();
    let liveness = r.liveness()?;
    Ok(format!(
        "{{\"group\":{},\"exchange\":{},\"version\":\"{}.{}\",\"depth\":{},\"capacity\":{},\
         \"segment_size\":{},\"writer_pid\":{},\"state\":{},\"instance_id\":{},\"heartbeat_ns\":{},\
         \"stale_after_ms\":{},\"stale\":{},\"takeovers\":{},\"market_count\":{},\"notify\":{},\"liveness\":{}}}",
        js(&w.group),
        js(&g.exchange),
        g.version_major,
        g.version_minor,
        g.depth,
        g.capacity,
        g.segment_size,
        w.writer_pid,
        w.state,
        w.instance_id,
        w.heartbeat_ns,
        w.stale_after_ms,
        r.writer_stale(),
        w.takeovers,
        w.market_count,
        r.notify_value(),
        js(&liveness.to_string())
    ))
}

fn wait(group: &str, symbol: &str, timeout: Duration) -> Result<String, Error> {
    let mut r = Reader::attach(group)?;
    let market = r.find(symbol)?;
    let before = r.slot_seq(&market);
    // Tell the caller we are about to sleep, so it can publish only after this line.
    eprintln!("waiting");
    let updated = r.wait_for_update(Some((&market, before)), timeout)?;
    let s = r.snapshot(
        symbol,
        ReadOptions {
            allow_out_of_sync: true,
        },
    )?;
    Ok(format!(
        "{{\"updated\":{updated},\"update_id\":{}}}",
        s.update_id
    ))
}

fn repeat(group: &str, symbol: &str, count: u64) -> Result<String, Error> {
    let mut r = Reader::attach(group)?;
    let mut snap = Snapshot::default();
    let mut lines = String::new();
    for _ in 0..count {
        r.read_into(
            symbol,
            &mut snap,
            ReadOptions {
                allow_out_of_sync: true,
            },
        )?;
        lines.push_str(&snapshot_json(&snap));
        lines.push('\n');
    }
    lines.pop();
    Ok(lines)
}

fn result_name(e: &Error) -> &'static str {
    match e {
        Error::OutOfSync { .. } => "out_of_sync",
        Error::WriterDead { .. } => "writer_dead",
        Error::Contention { .. } => "contended",
        Error::MarketNotFound { .. } => "not_found",
        _ => "error",
    }
}

fn watch(group: &str, symbol: &str) -> Result<String, Error> {
    let mut r = Reader::attach(group)?;
    let mut snap = Snapshot::default();
    println!("ready");
    for _ in std::io::stdin().lock().lines().map_while(Result::ok) {
        let result = r.read_into(symbol, &mut snap, ReadOptions::default());
        let name = result.as_ref().map_or_else(result_name, |()| "ok");
        let status = match &result {
            Err(Error::OutOfSync { status, .. }) => *status,
            _ => snap.status,
        };
        println!(
            "{{\"result\":\"{name}\",\"update_id\":{},\"status\":{status},\"message\":{}}}",
            snap.update_id,
            js(&snap.message)
        );
    }
    Ok("{\"done\":true}".to_string())
}

fn spin(group: &str, symbol: &str, time: Duration) -> Result<String, Error> {
    let mut r = Reader::attach(group)?;
    let mut snap = Snapshot::default();
    let end = monotonic_ns() + time.as_nanos() as i64;
    let (mut reads, mut accepted) = (0u64, 0u64);
    let mut cycles: BTreeMap<i64, (u64, VecDeque<i64>)> = BTreeMap::new();
    loop {
        let t0 = monotonic_ns();
        if t0 >= end {
            break;
        }
        reads += 1;
        let result = r.read_into(symbol, &mut snap, ReadOptions::default());
        if let Err(Error::WriterDead {
            liveness: Liveness::Stopped,
            ..
        }) = result
        {
            break; // the writer stopped cleanly: the run is over
        }
        if result.is_ok() {
            accepted += 1;
            let (count, tail) = cycles.entry(snap.update_id / CYCLE).or_default();
            *count += 1;
            if tail.len() == SPIN_TAIL {
                tail.pop_front();
            }
            tail.push_back(t0);
        } else if reads % 64 == 0 {
            std::thread::yield_now(); // a writer restarting on a loaded host needs the CPU
        }
    }
    let items: Vec<String> = cycles
        .iter()
        .map(|(cycle, (count, tail))| {
            let t: Vec<String> = tail.iter().map(i64::to_string).collect();
            format!("\"{cycle}\":{{\"count\":{count},\"tail\":[{}]}}", t.join(","))
        })
        .collect();
    Ok(format!(
        "{{\"reads\":{reads},\"accepted\":{accepted},\"cycles\":{{{}}}}}",
        items.join(",")
    ))
}

fn snapshot_json(s: &Snapshot) -> String {
    format!(
        "{{\"symbol\":{},\"update_id\":{},\"event_time_ms\":{},\"recv_time_ns\":{},\
         \"publish_time_ns\":{},\"status\":{},\"in_sync\":{},\"updates\":{},\"message\":{},\
         \"bids\":{},\"asks\":{}}}",
        js(&s.symbol),
        s.update_id,
        s.event_time_ms,
        s.recv_time_ns,
        s.publish_time_ns,
        s.status,
        s.in_sync(),
        s.counters.updates,
        js(&s.message),
        levels_json(&s.bids),
        levels_json(&s.asks)
    )
}

fn levels_json(levels: &[Level]) -> String {
    let rows: Vec<String> = levels
        .iter()
        .map(|l| format!("[{},{}]", num(l.price), num(l.quantity)))
        .collect();
    format!("[{}]", rows.join(","))
}

/// Shortest representation that round-trips (Rust's `{:?}` for f64); JSON has no NaN/inf.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        "null".to_string()
    }
}

fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
