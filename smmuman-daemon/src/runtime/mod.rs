//! The daemon's plumbing on the board: the console, the clock, the heap, the panic handler and
//! the one way out ([`exit()`]).

pub mod clock;
pub mod console;
mod exit;
pub mod heap;
mod panic;

pub use exit::exit;
