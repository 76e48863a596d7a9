//! The operator's channel: `smmuctl` reaches the manager's admin ops
//! (`smmuman_server::admin`) over a byte stream of its own, separate from the VMMs' mailboxes.
//!
//! On QEMU `virt` the stream is the board's second PL011 (`/aliases/serial1`,
//! [`crate::board::operator_uart`]), which QEMU connects to a socket on the developer's machine
//! (`cargo xtask run --operator unix:PATH`). Why a UART and not a virtio console: QEMU 10's
//! `virt` offers the second non-secure PL011 whenever a second `-serial` is given, the daemon
//! already drives the PL011 (a few registers, polled), and a byte stream is all the framing
//! (`smmuman_admin_api::frame`) needs; a virtio console would add a virtqueue driver, DMA
//! buffers the SMMU must not see, and a dependency for the same bytes.
//!
//! * [`channel`]: bytes in, messages out, replies back: host-tested over a model port.
//! * [`host_view`]: what the host tells the admin ops (`admin::Host`): its IOMMU unit, its
//!   memory map, its VMs, its heap; host-tested against QEMU's device tree.
//! * the board half (`board.rs`, on the board only): opening the UART, one poll per service
//!   pass of the host loop, and `stay=1` (the host stays resident once its VMs stopped).

pub mod channel;
pub mod host_view;

#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
mod board;
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "bare"))]
pub use board::*;
