//! Execution contexts on one CPU: each client (a "qvm-like" VMM) runs on its own stack with its
//! own registers, and gives the CPU back when it waits for the manager. The manager runs on the
//! boot stack and resumes the clients in turn.
//!
//! Switching is cooperative: [`Yielder::yield_now`] saves the callee-saved registers of the
//! running context (AAPCS64: x19-x30, sp, d8-d15) and loads the other's. The rest of the state
//! is saved by the compiler around the call, as for any function call.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

/// Bytes of stack per task. A VMM task that restarts its VM holds the VM's resources (its
/// manager connection's 2 message buffers among them) while the VM runs: 128 KiB.
pub const STACK_SIZE: usize = 128 * 1024;
/// Tasks that can exist at once.
pub const MAX_TASKS: usize = 4;
/// Written at the lowest word of each task stack; a task that overwrote it overflowed.
const CANARY: u64 = 0x5a5a_c0de_57ac_4b1d;

/// Callee-saved registers of a context that is not running (AAPCS64 §6.1.1).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Context {
    /// x19..x28, x29 (frame pointer), x30 (link register: where the context resumes).
    x: [u64; 12],
    sp: u64,
    /// d8..d15 (the low halves of v8..v15).
    d: [u64; 8],
}

core::arch::global_asm!(
    // smmuman_switch_context(save: *mut Context, load: *const Context)
    ".global smmuman_switch_context",
    "smmuman_switch_context:",
    "stp x19, x20, [x0, #0]",
    "stp x21, x22, [x0, #16]",
    "stp x23, x24, [x0, #32]",
    "stp x25, x26, [x0, #48]",
    "stp x27, x28, [x0, #64]",
    "stp x29, x30, [x0, #80]",
    "mov x9, sp",
    "str x9, [x0, #96]",
    "stp d8, d9, [x0, #104]",
    "stp d10, d11, [x0, #120]",
    "stp d12, d13, [x0, #136]",
    "stp d14, d15, [x0, #152]",
    "ldp x19, x20, [x1, #0]",
    "ldp x21, x22, [x1, #16]",
    "ldp x23, x24, [x1, #32]",
    "ldp x25, x26, [x1, #48]",
    "ldp x27, x28, [x1, #64]",
    "ldp x29, x30, [x1, #80]",
    "ldr x9, [x1, #96]",
    "mov sp, x9",
    "ldp d8, d9, [x1, #104]",
    "ldp d10, d11, [x1, #120]",
    "ldp d12, d13, [x1, #136]",
    "ldp d14, d15, [x1, #152]",
    "ret",
    // First resumption of a task: x19 = its Rust entry, x20 = its cell. The entry never returns.
    ".global smmuman_task_start",
    "smmuman_task_start:",
    "mov x0, x20",
    "blr x19",
    "brk #0x7a5c",
);

unsafe extern "C" {
    fn smmuman_switch_context(save: *mut Context, load: *const Context);
    fn smmuman_task_start();
}

/// A task body: runs on its own stack; `y` gives the CPU back.
pub type Entry = fn(y: &Yielder, arg: usize);

struct Cell {
    task: Context,
    manager: Context,
    entry: Entry,
    arg: usize,
    finished: bool,
}

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

struct Slot {
    stack: UnsafeCell<MaybeUninit<Stack>>,
    cell: UnsafeCell<MaybeUninit<Cell>>,
}

struct Slots([Slot; MAX_TASKS]);

// SAFETY: one CPU runs the daemon, and contexts switch only at `yield_now`/`resume`; each slot is
// reached only through the one `Task` that claimed it (see `Task::spawn`).
unsafe impl Sync for Slots {}

static SLOTS: Slots = Slots(
    [const {
        Slot {
            stack: UnsafeCell::new(MaybeUninit::uninit()),
            cell: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }; MAX_TASKS],
);
static CLAIMED: spin::Mutex<[bool; MAX_TASKS]> = spin::Mutex::new([false; MAX_TASKS]);

/// Gives the CPU back to the manager; handed to each task body.
pub struct Yielder {
    cell: *mut Cell,
}

impl Yielder {
    /// Switches to the manager's context; returns when the manager resumes this task.
    pub fn yield_now(&self) {
        // SAFETY: `cell` is this task's, initialised by `spawn`; only this context runs now, so
        // no other reference to it is live; the manager's context was saved by `resume`.
        unsafe {
            let cell = self.cell;
            smmuman_switch_context(&raw mut (*cell).task, &raw const (*cell).manager);
        }
    }
}

/// The Rust side of a task's first resumption: runs the body, then parks for good.
extern "C" fn task_main(cell: *mut Cell) -> ! {
    let y = Yielder { cell };
    // SAFETY: `spawn` initialised the cell before the first resumption; the fields are copied
    // out before the body runs.
    let (entry, arg) = unsafe { ((*cell).entry, (*cell).arg) };
    entry(&y, arg);
    // SAFETY: as in `yield_now`: this context is the only one running.
    unsafe { (*cell).finished = true };
    loop {
        y.yield_now();
    }
}

/// A task the manager can resume.
pub struct Task {
    index: usize,
}

impl Task {
    /// Prepares `entry(arg)` on a free stack; it first runs at the first [`Task::resume`].
    /// `None` when all [`MAX_TASKS`] stacks are in use.
    pub fn spawn(entry: Entry, arg: usize) -> Option<Self> {
        let index = {
            let mut claimed = CLAIMED.lock();
            let i = claimed.iter().position(|c| !c)?;
            claimed[i] = true;
            i
        };
        let slot = &SLOTS.0[index];
        let stack = slot.stack.get().cast::<u8>();
        let cell = slot.cell.get().cast::<Cell>();
        // SAFETY: the slot was just claimed, so nothing else uses its stack or cell; the stack is
        // 16-byte aligned and STACK_SIZE long, so its top is a valid initial SP.
        unsafe {
            stack.cast::<u64>().write(CANARY);
            let mut task = Context::default();
            task.x[0] = task_main as *const () as u64; // x19
            task.x[1] = cell as u64; // x20
            task.x[11] = smmuman_task_start as *const () as u64; // x30
            task.sp = stack.add(STACK_SIZE) as u64;
            cell.write(Cell {
                task,
                manager: Context::default(),
                entry,
                arg,
                finished: false,
            });
        }
        Some(Self { index })
    }

    fn cell(&self) -> *mut Cell {
        SLOTS.0[self.index].cell.get().cast::<Cell>()
    }

    /// Runs the task until it yields or finishes; `true` once it has finished.
    pub fn resume(&mut self) -> bool {
        let cell = self.cell();
        // SAFETY: `spawn` initialised the cell; this `Task` is its only handle, and the task's
        // context is not running (we are), so nothing else touches the cell now.
        unsafe {
            if !(*cell).finished {
                smmuman_switch_context(&raw mut (*cell).manager, &raw const (*cell).task);
            }
            (*cell).finished
        }
    }

    /// Whether the task's stack canary is intact (false: it overflowed its stack).
    pub fn stack_intact(&self) -> bool {
        let stack = SLOTS.0[self.index].stack.get().cast::<u64>();
        // SAFETY: the lowest word of this task's own stack, written by `spawn`.
        unsafe { stack.read_volatile() == CANARY }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // A task dropped before it finished is abandoned where it stopped; its stack is reused.
        CLAIMED.lock()[self.index] = false;
    }
}
