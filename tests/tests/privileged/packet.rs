//! What the `BPF_PROG_TEST_RUN` tests share: a throwaway netns and bpffs
//! ([`Scratch`]), and the frames of [`weir_tests::frame`].

pub use weir_tests::frame::{TCP, UDP, checksums_ok, frame, tuple};

/// A per-test bpffs and work directory for `BPF_PROG_TEST_RUN` tests,
/// removed on drop (after a failure too). Creating it moves the calling
/// thread into a fresh, empty network namespace: the programs' route
/// lookups see no routes and nothing can leave.
pub struct Scratch {
    /// The run's work directory.
    pub run_dir: std::path::PathBuf,
    /// Its bpffs, where the object's maps are pinned.
    pub bpffs: weir_tests::BpfFs,
}

impl Scratch {
    pub fn new() -> Self {
        // SAFETY: unshare(CLONE_NEWNET) only changes this thread's namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        assert!(
            !weir_agent::datapath::EMBEDDED_OBJECT.is_empty(),
            "weir-agent was built without its eBPF object: run `cargo xtask test`"
        );
        weir_tests::cleanup_once();
        let run_dir = weir_tests::RunTag::new(weir_tests::RunKind::Test).run_dir();
        let bpffs = weir_tests::BpfFs::mount(run_dir.join("bpffs")).expect("mounting a bpffs");
        Scratch { run_dir, bpffs }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.bpffs.unmount();
        let _ = std::fs::remove_dir_all(&self.run_dir);
        // The shared parent goes with the last run in it (fails otherwise).
        let _ = std::fs::remove_dir(weir_tests::RUN_ROOT);
    }
}
