/*
 * A C VMM against libsmmu, on the developer's machine: it drives an in-process manager (the
 * test build's smmu_test_manager_*, over the model IOMMU) the way a VMM drives smmuman, and
 * asks the model IOMMU where its device's DMA lands after each step. Built and run by
 * crates/smmuman-capi/tests/c_smoke.rs, which also checks the lines it prints.
 */
#define SMMU_TEST_MANAGER 1
#include "smmu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* The test board: the edu at 00:01.0 (StreamID 0x8), a NIC at 00:02.0 (StreamID 0x10). */
#define EDU_SID 0x8u
#define NIC_SID 0x10u
/* VM a (client 1): 4 MiB of host RAM at 0x8000_0000, guest-physical 0x4000_0000, the edu. */
#define A_RAM 0x80000000ull
#define GUEST_RAM 0x40000000ull
/* VM b (client 2): 4 MiB at 0x9000_0000, the NIC. */
#define B_RAM 0x90000000ull
#define RAM_LEN 0x400000ull

static struct smmu_test_manager *m;

/* Where a DMA by `sid` at `iova` lands; 0 when the IOMMU refuses it. */
static uint64_t dma(uint32_t sid, uint64_t iova) {
    uint64_t pa = 0;
    return smmu_test_manager_translate(m, sid, iova, &pa) ? pa : 0;
}

static void print_refusal(const char *what, smmu_status rc, smmu_client_t c) {
    char msg[256];
    size_t n = smmu_last_error(c, msg, sizeof msg);
    CHECK(n > 0 && n < sizeof msg, "message of %zu bytes", n);
    printf("REFUSED %s status=%d (%s) message=\"%s\"\n", what, (int)rc, smmu_strerror(rc), msg);
}

int main(void) {
    m = smmu_test_manager_new();
    CHECK(m != NULL, "no test manager");
    /* The host's assignments, before the VMMs start. */
    CHECK(smmu_test_manager_assign(m, 1, A_RAM, RAM_LEN, 1) == 0, "assign a");
    CHECK(smmu_test_manager_assign(m, 2, B_RAM, RAM_LEN, 2) == 0, "assign b");

    struct smmu_transport t;
    CHECK(smmu_test_manager_transport(m, 1, &t) == 0, "transport");
    smmu_client_t c = SMMU_NO_CLIENT;
    smmu_status rc = smmu_connect(&t, &c);
    CHECK(rc == SMMU_OK && c != SMMU_NO_CLIENT, "connect: %d", (int)rc);

    /* The client rules: with the manager the edu is known; without it the VM is refused. */
    struct smmu_passthrough edu = {"edu", SMMU_DEVICE_PCI, 0, 1, 0, 0, 1};
    struct smmu_vm vm = {"a", 0, &edu, 1};
    int32_t decision = -1;
    char msg[256];
    rc = smmu_vmm_decide(c, &vm, msg, sizeof msg, &decision);
    CHECK(rc == SMMU_OK && decision == SMMU_DECISION_START, "decide: %d %d %s", (int)rc, decision, msg);
    printf("DECISION manager=yes decision=%d message=\"%s\"\n", decision, msg);
    rc = smmu_vmm_decide(SMMU_NO_CLIENT, &vm, msg, sizeof msg, &decision);
    CHECK(rc == SMMU_OK && decision == SMMU_DECISION_REFUSE, "decide: %d %d", (int)rc, decision);
    printf("DECISION manager=no decision=%d message=\"%s\"\n", decision, msg);

    smmu_object_t obj = 0;
    rc = smmu_obj_create(c, 0, &obj);
    CHECK(rc == SMMU_OK && obj != 0, "create: %d", (int)rc);

    /* Another VM's device: refused, and its DMA still goes nowhere. */
    rc = smmu_device_add_pci(c, obj, 0, 2, 0, NULL);
    CHECK(rc == SMMU_ERR_DEVICE_NOT_ASSIGNED, "nic attach: %d", (int)rc);
    print_refusal("attach-nic", rc, c);

    struct smmu_devices changed = {0, 0};
    rc = smmu_device_add_pci(c, obj, 0, 1, 0, &changed);
    CHECK(rc == SMMU_OK && changed.devices == 1 && changed.groups == 1, "attach: %d", (int)rc);
    CHECK(dma(EDU_SID, GUEST_RAM) == 0, "DMA lands before any mapping");

    /* The VM's RAM as two windows, the second read-only: both land. */
    struct smmu_map_entry ram[2] = {
        {GUEST_RAM, A_RAM, 0x200000, SMMU_ACCESS_READ | SMMU_ACCESS_WRITE, 0},
        {GUEST_RAM + 0x200000, A_RAM + 0x200000, 0x200000, SMMU_ACCESS_READ, 0},
    };
    rc = smmu_mapping_add(c, obj, ram, 2);
    CHECK(rc == SMMU_OK, "map: %d", (int)rc);
    CHECK(dma(EDU_SID, GUEST_RAM + 0x1234) == A_RAM + 0x1234, "DMA in window 0");
    CHECK(dma(EDU_SID, GUEST_RAM + 0x200040) == A_RAM + 0x200040, "DMA in window 1");
    printf("DMA sid=0x%x iova=0x%llx lands pa=0x%llx\n", EDU_SID,
           (unsigned long long)(GUEST_RAM + 0x1234), (unsigned long long)dma(EDU_SID, GUEST_RAM + 0x1234));

    /* VM b's RAM: the manager refuses, and a DMA there still misses. */
    struct smmu_map_entry steal = {GUEST_RAM + 0x400000, B_RAM, 0x1000, SMMU_ACCESS_READ, 0};
    rc = smmu_mapping_add(c, obj, &steal, 1);
    CHECK(rc == SMMU_ERR_NOT_ASSIGNED, "steal: %d", (int)rc);
    print_refusal("map-other-vm", rc, c);
    CHECK(dma(EDU_SID, GUEST_RAM + 0x400000) == 0, "the refused window lands");

    /* What the library refuses itself: nothing reaches the manager. */
    struct smmu_map_entry device_attr = {GUEST_RAM + 0x400000, A_RAM, 0x1000, 8, 0};
    rc = smmu_mapping_add(c, obj, &device_attr, 1);
    CHECK(rc == SMMU_ERR_INVALID, "access 8: %d", (int)rc);
    print_refusal("map-access", rc, c);
    struct smmu_map_entry odd = {GUEST_RAM + 0x400000, A_RAM, 0x1001, SMMU_ACCESS_READ, 0};
    rc = smmu_mapping_add(c, obj, &odd, 1);
    CHECK(rc == SMMU_ERR_INVALID, "len 0x1001: %d", (int)rc);
    rc = smmu_mapping_add(c, obj, NULL, 1);
    CHECK(rc == SMMU_ERR_NULL, "NULL entries: %d", (int)rc);
    rc = smmu_device_add_pci(c, obj, 0, 32, 0, NULL);
    CHECK(rc == SMMU_ERR_INVALID, "device 32: %d", (int)rc);
    print_refusal("attach-dev-32", rc, c);

    /* Unmap the second window: its DMA missed nothing before, misses now. */
    struct smmu_range second = {GUEST_RAM + 0x200000, 0x200000};
    uint64_t bytes = 0;
    rc = smmu_mapping_remove(c, obj, &second, 1, &bytes);
    CHECK(rc == SMMU_OK && bytes == 0x200000, "unmap: %d %llu", (int)rc, (unsigned long long)bytes);
    CHECK(dma(EDU_SID, GUEST_RAM + 0x200040) == 0, "DMA lands after unmap");
    CHECK(dma(EDU_SID, GUEST_RAM + 0x1234) == A_RAM + 0x1234, "window 0 lost");

    /* The device writes where nothing is mapped now: the fault is the object's. */
    smmu_test_manager_inject_fault(m, EDU_SID, GUEST_RAM + 0x200040, 1);
    smmu_test_manager_inject_fault(m, NIC_SID, 0x1000, 0); /* nobody's: not in our ledger */
    struct smmu_fault faults[SMMU_FAULTS_PER_READ];
    size_t got = 99;
    struct smmu_fault_info info;
    rc = smmu_fault_read(c, obj, faults, SMMU_FAULTS_PER_READ, &got, &info);
    CHECK(rc == SMMU_OK && got == 1, "faults: %d got %zu", (int)rc, got);
    CHECK(faults[0].sid == EDU_SID && faults[0].addr == GUEST_RAM + 0x200040 &&
              faults[0].dir == SMMU_DIR_WRITE && faults[0].reason == SMMU_FAULT_TRANSLATION &&
              faults[0].count == 1 && faults[0].seq == 1,
          "fault record");
    CHECK(info.remaining == 0 && info.dropped == 0 && info.possibly_lost == 0, "fault info");
    printf("FAULT seq=%llu sid=0x%x addr=0x%llx dir=%s reason=%u\n", (unsigned long long)faults[0].seq,
           faults[0].sid, (unsigned long long)faults[0].addr,
           faults[0].dir == SMMU_DIR_WRITE ? "write" : "read", (unsigned)faults[0].reason);
    rc = smmu_fault_read(c, obj, faults, SMMU_FAULTS_PER_READ, &got, NULL);
    CHECK(rc == SMMU_OK && got == 0, "faults read twice: %zu", got);

    /* Destroy: the device is back to deny; the object is gone. */
    rc = smmu_obj_destroy(c, obj);
    CHECK(rc == SMMU_OK, "destroy: %d", (int)rc);
    CHECK(dma(EDU_SID, GUEST_RAM + 0x1234) == 0, "DMA lands after destroy");
    rc = smmu_obj_destroy(c, obj);
    CHECK(rc == SMMU_ERR_NOT_FOUND, "destroy twice: %d", (int)rc);
    print_refusal("destroy-twice", rc, c);

    CHECK(smmu_disconnect(c) == SMMU_OK, "disconnect");
    rc = smmu_obj_create(c, 0, &obj);
    CHECK(rc == SMMU_ERR_BAD_CLIENT, "stale handle: %d", (int)rc);
    smmu_test_manager_free(m);
    puts("SMOKE OK");
    return 0;
}
