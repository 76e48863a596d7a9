//! The scenarios' client VMMs (`vmm.rs`) run as tasks of the manager loop
//! ([`smmuman_daemon::manager_task::serve_tasks`]), as the host's VMMs are.

use crate::vmm;
use iommu_core::{Bdf, PhysAddr, StreamId};
use smmuman_daemon::bringup::platform::Platform;
use smmuman_daemon::hyp::tasks::Task;
use smmuman_daemon::manager_task::{assign, serve_tasks, Mgr, MAX_CLIENTS};

/// Rounds of the loop after which clients that still have not finished are abandoned.
pub const MAX_ROUNDS: u32 = 100_000;

/// Runs the `vmms` as client tasks until all have finished, serving them with `manager` when
/// there is one (`None`: no manager runs; the mailboxes stay closed). Returns each VMM's verdict.
pub fn run(
    p: &Platform,
    mut manager: Option<&mut Mgr>,
    vmms: heapless::Vec<vmm::Vmm, MAX_CLIENTS>,
) -> heapless::Vec<vmm::Verdict, MAX_CLIENTS> {
    let n = vmms.len();
    let mut tasks: heapless::Vec<Option<Task>, MAX_CLIENTS> = heapless::Vec::new();
    for (i, v) in vmms.into_iter().enumerate() {
        // The host's word on what this VMM may grant its devices, before it can ask anything.
        if let Some(m) = manager.as_deref_mut() {
            assign(m, i, v.name, &v.assignment, &v.devices);
        }
        vmm::hand_over(i, v);
        let _ = tasks.push(Task::spawn(vmm::main, i));
    }
    serve_tasks(p, manager, &mut tasks, MAX_ROUNDS, &mut |_, _| false);
    vmm::verdicts(n)
}

/// Whether `sid` is back in default deny (attached to no domain) in the SMMU.
pub fn is_denied(m: &Mgr, sid: StreamId) -> bool {
    m.backend().stream_domain(sid) == Some(None)
}

/// The first `edu` behind the SMMU, and its StreamID.
pub fn edus(p: &Platform) -> heapless::Vec<(Bdf, StreamId), 4> {
    p.edus()
        .filter_map(|f| f.sid.map(|sid| (f.bdf, sid)))
        .take(4)
        .collect()
}

/// The start of the daemon's image: memory no client may ever map.
pub fn manager_memory() -> PhysAddr {
    PhysAddr(smmuman_daemon::arch::aarch64::boot::image_bounds().0)
}
