//! The operator's channel on the board: the second PL011, polled once per service pass of
//! the host loop (which, with `stay=1`, keeps serving once its VMs stopped).

use super::channel::Channel;
use super::host_view::HostView;
use crate::address_map::AddressMap;
use crate::bringup::platform::Platform;
use crate::clock::Clock;
use crate::manager_task::Mgr;
use crate::mmio::MmioRegion;
use crate::pl011::Pl011;
use crate::runtime::console;
use smmuman_server::admin::{self, HostVm};
use spin::Mutex;

/// The open channel and what the host tells through it.
struct Operator {
    channel: Channel<Pl011<MmioRegion>>,
    view: HostView,
}

/// Where the channel stands (one static, never moved: the size of its variants is moot).
#[allow(clippy::large_enum_variant)]
enum State {
    /// Not opened yet (the first service pass opens it).
    NotOpened,
    /// The board has no operator UART (or its map failed): nothing to poll.
    Absent,
    /// Open.
    Open(Operator),
}

static OPERATOR: Mutex<State> = Mutex::new(State::NotOpened);

/// The channel over the board's operator UART, or `None` without one.
fn open(p: &Platform) -> Option<Operator> {
    let Some(uart) = p.board.operator_uart else {
        console::line(format_args!(
            "OPERATOR channel=none detail=\"the board has no second PL011 (QEMU: a second -serial)\""
        ));
        return None;
    };
    let map = AddressMap::for_board(&p.board, &[]).ok()?;
    // SAFETY: the operator UART's register window from the device tree, mapped as device
    // memory in the EL2 map (`AddressMap::for_board` adds it); only this channel touches it.
    let regs = unsafe { MmioRegion::new(uart.base, uart.size) };
    console::line(format_args!(
        "OPERATOR channel=pl011 base={} size={:#x}",
        uart.base, uart.size
    ));
    Some(Operator {
        channel: Channel::new(Pl011::new_duplex(regs)),
        view: HostView::new(&p.board, &map),
    })
}

/// One poll of the operator's channel: the host's VMs are `vms` now. Every whole request
/// waiting is answered through `smmuman_server::admin::handle`, the only caller of the admin
/// ops.
pub fn serve(p: &Platform, m: &mut Mgr, vms: &[HostVm]) {
    let mut state = OPERATOR.lock();
    if matches!(*state, State::NotOpened) {
        *state = open(p).map_or(State::Absent, State::Open);
    }
    let State::Open(Operator { channel, view }) = &mut *state else {
        return;
    };
    view.set_vms(vms);
    view.set_heap(crate::runtime::heap::usage());
    let now = p.clock.now();
    let polled = channel.poll(|request, reply| admin::handle(m, view, now, request, reply));
    if polled.refused > 0 {
        console::line(format_args!(
            "OPERATOR refused={} detail=\"a message header was not the admin protocol's; the bytes after it were discarded\"",
            polled.refused
        ));
    }
}
