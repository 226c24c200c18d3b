//! Decode a pickle file and print what the arena costs: `cargo run --release -p ckpt-pickle
//! --example decode_cost -- FILE...` (values, heap bytes of the arena, bytes per value, and the
//! process's peak RSS so far). How the figures in the value-model commit were measured.

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    for path in std::env::args().skip(1) {
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{path}: {e}");
                continue;
            }
        };
        let t = std::time::Instant::now();
        match ckpt_pickle::decode(&data) {
            Ok(p) => {
                let heap = p.heap_bytes();
                println!(
                    "{path}: {} bytes, {} values, arena {:.1} MB ({:.1} bytes/value), {:.0} ms, peak RSS {:.1} MB",
                    data.len(),
                    p.len(),
                    heap as f64 / 1e6,
                    heap as f64 / p.len().max(1) as f64,
                    t.elapsed().as_secs_f64() * 1e3,
                    peak_rss_kb() as f64 / 1024.0
                );
            }
            Err(e) => println!("{path}: {e}"),
        }
    }
}
