//! Facts about the host corelay runs on.

/// Online CPUs of this host (at least 1).
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The memory page size in bytes (4096 if the system does not say).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// (virtual size, resident set) of this process in KiB, from /proc/self/statm.
pub fn process_memory() -> Option<(u64, u64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut it = statm.split_whitespace().map(|v| v.parse::<u64>().ok());
    let (size, rss) = (it.next()??, it.next()??);
    let page = page_size() as u64;
    Some((size * page / 1024, rss * page / 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpus() {
        assert!(online_cpus() >= 1);
        assert!(page_size().is_power_of_two());
        let (vsize, rss) = process_memory().expect("/proc/self/statm is readable");
        assert!(vsize >= rss && rss > 0, "{vsize} {rss}");
    }
}
