//! `memory::keep_freed_memory` as the front ends call it: a second forward pass's worth of
//! activation buffers, allocated and freed on a pool thread, must come from memory the first
//! pass freed, not be faulted in afresh. Its own test binary: the setting is process-wide.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

/// Minor page faults of the whole process so far.
fn minor_faults() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: filled by the successful call above.
    unsafe { usage.assume_init() }.ru_minflt
}

/// One pass: 160 activation-sized buffers (1 MiB each, as GPT-2 small's cached hooks at 1×128),
/// each written, all held until the end as a cache holds them, then freed.
fn pass() {
    let buffers: Vec<Vec<f32>> = (0..160).map(|i| vec![i as f32; 1 << 18]).collect();
    std::hint::black_box(&buffers);
}

#[test]
fn a_second_pass_on_a_pool_thread_reuses_the_first_ones_memory() {
    glassbox_models::memory::keep_freed_memory();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a thread pool");
    let faults = pool.install(|| {
        pass();
        let before = minor_faults();
        pass();
        minor_faults() - before
    });
    // 160 MiB is 40,960 pages; a pass served from freed memory faults in none of them (a few
    // for the list itself and stray allocations). glibc's default would unmap and fault most.
    assert!(
        faults < 2_000,
        "the second pass faulted {faults} pages: freed buffers went back to the kernel"
    );
}
