//! The memory the process uses, for the reports of `prepare` and the benches.

/// Resident memory of this process in bytes (Linux; 0 elsewhere): the total, its peak,
/// and the anonymous part (heap and stacks; the rest is mapped files, i.e. page cache).
pub fn resident() -> (u64, u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"), field("RssAnon:"))
}
