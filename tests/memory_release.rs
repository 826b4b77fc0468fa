//! A cleanup gives freed memory back to the system. Its own test binary, so that no other
//! test moves this process's RSS meanwhile.

/// Several threads fill their own arenas with small blocks, keep every 64th (so the heap
/// cannot simply shrink from the top), touch every page, and free the rest: the freed memory
/// stays resident, held by the allocator, until the cleanup asks for it back.
#[test]
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu")),
    ignore = "the allocator release is measured on linux-gnu (glibc) only"
)]
fn cleanup_returns_freed_memory_to_the_system() {
    const THREADS: usize = 4;
    const BLOCK: usize = 1024;
    const BLOCKS_PER_THREAD: usize = 32 * 1024; // 32 MiB a thread
    const KEEP_EVERY: usize = 64;

    let optimizer = perf::PerformanceOptimizer::builder()
        .build()
        .expect("valid");
    let memory = optimizer.memory();
    let kept: Vec<Vec<Box<[u8]>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                scope.spawn(move || {
                    let blocks: Vec<Box<[u8]>> = (0..BLOCKS_PER_THREAD)
                        .map(|i| vec![(thread + i) as u8 | 1; BLOCK].into_boxed_slice())
                        .collect();
                    blocks
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, block)| (i % KEEP_EVERY == 0).then_some(block))
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("no panic"))
            .collect()
    });
    let freed = THREADS * BLOCKS_PER_THREAD * BLOCK / KEEP_EVERY * (KEEP_EVERY - 1);

    let report = memory.cleanup_memory(true).expect("forced cleanup runs");
    assert!(
        report
            .actions
            .iter()
            .any(|action| action.name == "malloc_trim"),
        "{report:?}"
    );
    assert!(
        report.freed_bytes as f64 >= 0.5 * freed as f64,
        "freed {freed} bytes; the cleanup took RSS from {} to {} ({} bytes back)",
        report.rss_before_bytes,
        report.rss_after_bytes,
        report.freed_bytes,
    );
    eprintln!(
        "freed {freed} bytes; RSS {} -> {} ({} back)",
        report.rss_before_bytes, report.rss_after_bytes, report.freed_bytes
    );
    let live: usize = kept.iter().flatten().map(|block| block.len()).sum();
    assert_eq!(
        live,
        THREADS * BLOCKS_PER_THREAD / KEEP_EVERY * BLOCK,
        "kept blocks intact"
    );
    assert!(
        kept.iter()
            .flatten()
            .all(|block| block.iter().all(|&b| b & 1 == 1))
    );
}
