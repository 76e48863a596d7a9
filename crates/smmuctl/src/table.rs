//! Plain-text tables and the listings' formats.

use crate::snapshot::{device_name, Snapshot};
use iommu_core::Access;
use smmuman_api::MapFlags;

/// Columns padded to their widest cell, two spaces apart; trailing spaces trimmed.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (c, w) in r.iter().zip(&widths) {
            line.push_str(&format!("{c:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `rwx` letters of an access set.
pub fn access(a: Access) -> String {
    let mut s = String::new();
    s.push(if a.contains(Access::READ) { 'r' } else { '-' });
    s.push(if a.contains(Access::WRITE) { 'w' } else { '-' });
    s.push(if a.contains(Access::EXEC) { 'x' } else { '-' });
    s
}

/// `units`.
pub fn units(s: &Snapshot) -> String {
    let rows: Vec<Vec<String>> = s
        .units
        .iter()
        .map(|u| {
            vec![
                u.name.to_string(),
                u.kind.to_string(),
                format!("{:#x}", u.base.0),
                format!("{:#x}", u.size),
            ]
        })
        .collect();
    table(&["UNIT", "KIND", "BASE", "SIZE"], &rows)
}

fn object_cell(object: u32) -> String {
    if object == 0 {
        "-".to_string()
    } else {
        object.to_string()
    }
}

/// `devices`.
pub fn devices(s: &Snapshot) -> String {
    let rows: Vec<Vec<String>> = s
        .devices
        .iter()
        .map(|d| {
            let held = if d.object.0 == 0 {
                "default-deny".to_string()
            } else {
                s.vm_name(d.client.0)
            };
            vec![
                device_name(d),
                format!("{:#x}", d.sid.0),
                d.group_devices.to_string(),
                object_cell(d.object.0),
                held,
                s.vm_name(d.assigned.0),
            ]
        })
        .collect();
    table(
        &["DEVICE", "SID", "GROUP", "OBJECT", "HELD-BY", "ASSIGNED-TO"],
        &rows,
    )
}

/// `groups`.
pub fn groups(s: &Snapshot) -> String {
    let rows: Vec<Vec<String>> = s
        .groups
        .iter()
        .map(|g| {
            let members: Vec<String> = s
                .devices
                .iter()
                .filter(|d| d.sid == g.sid)
                .map(device_name)
                .collect();
            let held = if g.object.0 == 0 {
                "default-deny".to_string()
            } else {
                s.vm_name(g.client.0)
            };
            vec![
                format!("{:#x}", g.sid.0),
                members.join(","),
                object_cell(g.object.0),
                held,
                s.vm_name(g.assigned.0),
            ]
        })
        .collect();
    table(
        &["SID", "DEVICES", "OBJECT", "HELD-BY", "ASSIGNED-TO"],
        &rows,
    )
}

/// `vms`.
pub fn vms(s: &Snapshot) -> String {
    let rows: Vec<Vec<String>> = s
        .vms
        .iter()
        .map(|v| {
            let name = if v.name.is_empty() {
                s.vm_name(v.client.0)
            } else {
                v.name.to_string()
            };
            vec![
                name,
                v.client.0.map_or("-".to_string(), |c| c.0.to_string()),
                v.state.to_string(),
                v.objects.to_string(),
                v.devices.to_string(),
                format!("{:#x}", v.assigned_bytes),
                v.mappings.to_string(),
                format!("{:#x}", v.mapped_bytes),
                v.pending_faults.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "VM", "CLIENT", "STATE", "OBJECTS", "DEVICES", "ASSIGNED", "MAPPINGS", "MAPPED",
            "FAULTS",
        ],
        &rows,
    );
    let u = &s.usage;
    out.push_str(&format!(
        "manager: objects {}/{} (orphans {}), mappings {}/{} ({} per object), heap {}\n",
        u.objects,
        u.max_objects,
        u.orphans,
        u.mappings,
        u.max_mappings,
        u.mappings_per_object,
        if u.heap_size == 0 {
            "not reported".to_string()
        } else {
            format!("{:#x}/{:#x} bytes", u.heap_used, u.heap_size)
        }
    ));
    out
}

/// `windows [VM]`: each object of the VM (every object when `vm` is `None`).
pub fn windows(s: &Snapshot, vm: Option<&str>) -> String {
    let mut out = String::new();
    for o in &s.objects {
        let name = s.vm_name(o.row.client.0);
        if vm.is_some_and(|v| v != name) {
            continue;
        }
        let r = &o.row;
        out.push_str(&format!(
            "{name} object {} ({} device(s)): {} window(s), {:#x} bytes; quota {}/{} mappings; heap <= {} bytes\n",
            r.object.0, r.devices, r.mappings, r.mapped_bytes, r.mappings, r.quota, r.heap_bound
        ));
        let rows: Vec<Vec<String>> = o
            .windows
            .iter()
            .map(|w| {
                vec![
                    format!("  {:#x}", w.window.iova().0),
                    format!("{:#x}", w.window.pa().0),
                    format!("{:#x}", w.window.len()),
                    access(w.access),
                    if w.flags.contains(MapFlags::SHARED) {
                        "shared".to_string()
                    } else {
                        "-".to_string()
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &["  IOVA", "HPA", "SIZE", "ACCESS", "SHARED"],
            &rows,
        ));
    }
    out
}
