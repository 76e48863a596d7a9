//! Everything the operator's commands show, read page by page from the manager.

use smmuman_admin_api::{
    AdminCallError, AdminClient, DeviceKind, DeviceRow, GrantRow, GroupRow, ObjectRow, RegionRow,
    UnitRow, UsageReply, VmRow,
};
use smmuman_api::{ClientId, MapEntry, ObjectId, Transport};

/// A listing longer than this many pages is refused (a server that always says `more`).
const MAX_PAGES: usize = 4096;

/// The server kept saying there was more.
fn endless() -> AdminCallError {
    AdminCallError::Transport(smmuman_api::TransportError::Other {
        code: crate::conn::ENDLESS,
    })
}

/// Reads every page of a listing indexed by position.
fn all<R: Copy>(
    mut page: impl FnMut(u16) -> Result<(Vec<R>, u16, bool), AdminCallError>,
) -> Result<Vec<R>, AdminCallError> {
    let mut out = Vec::new();
    let mut from = 0;
    for _ in 0..MAX_PAGES {
        let (rows, next, more) = page(from)?;
        out.extend(rows);
        if !more || next <= from {
            return Ok(out);
        }
        from = next;
    }
    Err(endless())
}

/// One object with its windows.
#[derive(Clone, Debug)]
pub struct Object {
    /// Its row.
    pub row: ObjectRow,
    /// Its windows, by I/O address.
    pub windows: Vec<MapEntry>,
}

/// What the manager holds, read at one moment (page by page: a listing may change between
/// pages while VMs run; each page is consistent).
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// IOMMU units.
    pub units: Vec<UnitRow>,
    /// Devices.
    pub devices: Vec<DeviceRow>,
    /// Groups.
    pub groups: Vec<GroupRow>,
    /// VMs and other clients.
    pub vms: Vec<VmRow>,
    /// Objects with their windows.
    pub objects: Vec<Object>,
    /// The memory map.
    pub regions: Vec<RegionRow>,
    /// Each client's grants.
    pub grants: Vec<(ClientId, Vec<GrantRow>)>,
    /// Manager-wide use.
    pub usage: UsageReply,
}

/// Reads every window of `object`.
///
/// # Errors
/// What the manager or the channel said.
pub fn windows<T: Transport>(
    c: &mut AdminClient<T>,
    object: ObjectId,
) -> Result<Vec<MapEntry>, AdminCallError> {
    let mut out = Vec::new();
    let mut from = 0u64;
    for _ in 0..MAX_PAGES {
        let r = c.list_windows(object, from)?;
        out.extend(r.windows.iter().copied());
        if !r.more || r.next <= from {
            return Ok(out);
        }
        from = r.next;
    }
    Err(endless())
}

/// Reads every object.
///
/// # Errors
/// What the manager or the channel said.
pub fn objects<T: Transport>(c: &mut AdminClient<T>) -> Result<Vec<ObjectRow>, AdminCallError> {
    let mut out = Vec::new();
    let mut from = ObjectId(0);
    for _ in 0..MAX_PAGES {
        let r = c.list_objects(from)?;
        out.extend(r.objects.iter().copied());
        if !r.more || r.next.0 <= from.0 {
            return Ok(out);
        }
        from = r.next;
    }
    Err(endless())
}

/// Reads every VM row.
///
/// # Errors
/// What the manager or the channel said.
pub fn vms<T: Transport>(c: &mut AdminClient<T>) -> Result<Vec<VmRow>, AdminCallError> {
    all(|from| {
        let r = c.list_vms(from)?;
        Ok((r.vms.iter().copied().collect(), r.next, r.more))
    })
}

/// Reads every device row.
///
/// # Errors
/// What the manager or the channel said.
pub fn devices<T: Transport>(c: &mut AdminClient<T>) -> Result<Vec<DeviceRow>, AdminCallError> {
    all(|from| {
        let r = c.list_devices(from)?;
        Ok((r.devices.iter().copied().collect(), r.next, r.more))
    })
}

impl Snapshot {
    /// Reads it all.
    ///
    /// # Errors
    /// What the manager or the channel said.
    pub fn read<T: Transport>(c: &mut AdminClient<T>) -> Result<Snapshot, AdminCallError> {
        let units = all(|from| {
            let r = c.list_units(from)?;
            Ok((r.units.iter().copied().collect(), r.next, r.more))
        })?;
        let devices = devices(c)?;
        let groups = all(|from| {
            let r = c.list_groups(from)?;
            Ok((r.groups.iter().copied().collect(), r.next, r.more))
        })?;
        let vms = vms(c)?;
        let mut objects = Vec::new();
        for row in self::objects(c)? {
            let windows = windows(c, row.object)?;
            objects.push(Object { row, windows });
        }
        let regions = all(|from| {
            let r = c.memory_map(from)?;
            Ok((r.regions.iter().copied().collect(), r.next, r.more))
        })?;
        let mut grants = Vec::new();
        for vm in &vms {
            if let Some(client) = vm.client.0 {
                let g = c.list_grants(client)?;
                grants.push((client, g.grants.iter().copied().collect()));
            }
        }
        let usage = c.usage()?;
        Ok(Snapshot {
            units,
            devices,
            groups,
            vms,
            objects,
            regions,
            grants,
            usage,
        })
    }

    /// The VM (or client) name of `client`: the plan's name, else `client-N`.
    pub fn vm_name(&self, client: Option<ClientId>) -> String {
        vm_name(&self.vms, client)
    }
}

/// The VM name of `client` among `vms`: the plan's name, else `client-N`; `-` for none.
pub fn vm_name(vms: &[VmRow], client: Option<ClientId>) -> String {
    match client {
        None => "-".to_string(),
        Some(c) => vms
            .iter()
            .find(|v| v.client.0 == Some(c) && !v.name.is_empty())
            .map_or_else(|| format!("client-{}", c.0), |v| v.name.to_string()),
    }
}

/// A device's name: `bb:dd.f` for a PCI function, `mmio@0x...` for a platform device.
pub fn device_name(d: &DeviceRow) -> String {
    match d.kind {
        DeviceKind::Pci => format!(
            "{:02x}:{:02x}.{}",
            d.bdf >> 8,
            (d.bdf >> 3) & 0x1f,
            d.bdf & 7
        ),
        DeviceKind::Mmio => format!("mmio@{:#x}", d.base.0),
    }
}
