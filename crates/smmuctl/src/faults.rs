//! `faults [VM] [--follow]`: the fault ledgers' histories read without taking anything (`peek_faults`),
//! printed as the VMMs log them: one `DMA_FAULT` line per burst (`qvm::fault_log`).

use crate::snapshot::{self, vm_name};
use iommu_core::Bdf;
use qvm::fault_log::{Burst, FaultLog, Line};
use smmuman_admin_api::{AdminCallError, AdminClient, DeviceKind, DeviceRow};
use smmuman_api::{FaultRecord, ObjectId, Transport};
use std::io::Write;

/// One ledger followed: its object, the VM it belongs to, the cursor and the open burst.
#[derive(Debug)]
pub struct Followed {
    /// The object, or `ObjectId::UNCLAIMED`.
    pub object: ObjectId,
    /// The VM's name (`unclaimed` for the unclaimed ledger).
    pub vm: String,
    /// The last sequence number shown.
    pub cursor: u64,
    log: FaultLog,
    /// Records that left the ledger before they were shown.
    pub missed: u64,
    /// The ledger's dropped count, last seen.
    pub dropped: u64,
    /// The ledger's possibly-lost count, last seen.
    pub possibly_lost: u64,
    /// The last address of the last record shown (where a run that grew since continues).
    last_addr: u64,
}

/// The ledgers of `vm` (every VM's and the unclaimed ledger when `None`), as they stand now;
/// ledgers already in `known` keep their cursor.
///
/// # Errors
/// What the manager or the channel said.
pub fn refresh<T: Transport>(
    c: &mut AdminClient<T>,
    vm: Option<&str>,
    known: &mut Vec<Followed>,
) -> Result<(), AdminCallError> {
    let vms = snapshot::vms(c)?;
    let mut now: Vec<(ObjectId, String)> = snapshot::objects(c)?
        .iter()
        .map(|o| (o.object, vm_name(&vms, o.client.0)))
        .filter(|(_, name)| vm.is_none_or(|v| v == name))
        .collect();
    if vm.is_none() {
        now.push((ObjectId::UNCLAIMED, "unclaimed".to_string()));
    }
    known.retain(|f| now.iter().any(|(o, _)| *o == f.object));
    for (object, name) in now {
        if !known.iter().any(|f| f.object == object) {
            known.push(Followed {
                object,
                vm: name,
                cursor: 0,
                log: FaultLog::default(),
                missed: 0,
                dropped: 0,
                possibly_lost: 0,
                last_addr: 0,
            });
        }
    }
    Ok(())
}

fn line(f: &Followed, devices: &[DeviceRow], b: Burst) -> String {
    let device = devices
        .iter()
        .find(|d| d.sid == b.sid && d.kind == DeviceKind::Pci)
        .map(|d| Bdf::from_rid(d.bdf));
    Line {
        vm: &f.vm,
        device,
        burst: b,
    }
    .to_string()
}

/// The part of `rec` after the cursor: all of it, or, for a run a full ledger kept extending
/// after it was shown (`rec.seq` ≤ the cursor), its new records only. Their sequence numbers,
/// count and last address are exact; the first address is interpolated from the last one shown
/// (a folded run keeps its first and last address only; QEMU's refused DMAs step evenly, so it
/// is exact there). `None`: nothing new.
fn new_part(f: &Followed, rec: &FaultRecord) -> Option<FaultRecord> {
    if rec.seq > f.cursor {
        return Some(*rec);
    }
    let new = rec.seq_last().checked_sub(f.cursor).filter(|n| *n > 0)?;
    let count = u32::try_from(new).ok()?;
    let addr_last = rec.addr_last.0;
    let step = addr_last.saturating_sub(f.last_addr) / new;
    let addr = if count == 1 {
        addr_last
    } else {
        f.last_addr.saturating_add(step.max(1)).min(addr_last - 1)
    };
    Some(FaultRecord {
        seq: f.cursor + 1,
        count,
        addr: iommu_core::Iova(addr),
        ..*rec
    })
}

/// Reads what is new in each ledger and writes one `DMA_FAULT` line per burst (and a
/// `DMA_FAULT_MISSED` line for records that left a ledger unseen); returns the bursts, with
/// the object whose ledger holds them, for whoever wants them (the picture).
///
/// # Errors
/// What the manager or the channel said; a write error as `Other`.
pub fn poll<T: Transport>(
    c: &mut AdminClient<T>,
    ledgers: &mut [Followed],
    devices: &[DeviceRow],
    out: &mut dyn Write,
) -> Result<Vec<(ObjectId, Burst)>, AdminCallError> {
    let mut seen = Vec::new();
    let werr = |_| {
        AdminCallError::Transport(smmuman_api::TransportError::Other {
            code: crate::conn::OUTPUT,
        })
    };
    for f in ledgers.iter_mut() {
        loop {
            let r = c.peek_faults(f.object, f.cursor)?;
            if r.missed > 0 {
                writeln!(
                    out,
                    "DMA_FAULT_MISSED vm={} object={} count={} (gone before smmuctl saw them: older than the ledger's history of its newest runs, or dropped from a full ledger)",
                    f.vm, f.object.0, r.missed
                )
                .map_err(werr)?;
                f.missed += r.missed;
            }
            f.dropped = r.page.dropped();
            f.possibly_lost = r.page.possibly_lost();
            let progressed = r.next > f.cursor;
            for rec in r.page.records() {
                let Some(rec) = new_part(f, rec) else {
                    continue;
                };
                f.last_addr = rec.addr_last.0;
                f.cursor = f.cursor.max(rec.seq_last());
                if let Some(b) = f.log.push(&rec) {
                    writeln!(out, "{}", line(f, devices, b)).map_err(werr)?;
                    seen.push((f.object, b));
                }
            }
            f.cursor = f.cursor.max(r.next);
            if r.page.remaining() == 0 || !progressed {
                break;
            }
        }
        if let Some(b) = f.log.flush() {
            writeln!(out, "{}", line(f, devices, b)).map_err(werr)?;
            seen.push((f.object, b));
        }
    }
    Ok(seen)
}

/// One summary line per ledger.
pub fn summary(ledgers: &[Followed], out: &mut dyn Write) -> std::io::Result<()> {
    for f in ledgers {
        writeln!(
            out,
            "LEDGER vm={} object={} records={} bursts={} missed={} dropped={} possibly_lost={}",
            f.vm,
            if f.object == ObjectId::UNCLAIMED {
                "unclaimed".to_string()
            } else {
                f.object.0.to_string()
            },
            f.log.records,
            f.log.bursts,
            f.missed,
            f.dropped,
            f.possibly_lost
        )?;
    }
    Ok(())
}
