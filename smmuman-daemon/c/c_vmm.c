/*
 * A VMM written in C, in the test image (scenario vmm-c): the Rust VMM's life (vmm.rs, plan
 * Life) through libsmmu. Freestanding: no libc; the host prints for it.
 */
#include "c_vmm.h"

#define DMA_LEN 64u /* 16 fault records when refused: QEMU records one per 4 bytes */

static const struct c_vmm_env *E;

#define CHECK(step, cond, value)                            \
    do {                                                    \
        if (!E->check(E->ctx, step, (cond) ? 1 : 0, value)) \
            return 1;                                       \
    } while (0)

static void say_error(smmu_client_t c, const char *key) {
    char msg[200];
    smmu_last_error(c, msg, sizeof msg);
    E->say(E->ctx, key, msg);
}

/* Every fault record of `obj`: their accesses summed into *accesses; 0 when all are the edu's
 * translation faults on writes inside [lo, lo + len). */
static int read_faults(smmu_client_t c, smmu_object_t obj, uint64_t lo, uint64_t len,
                       uint64_t *accesses) {
    struct smmu_fault f[SMMU_FAULTS_PER_READ];
    struct smmu_fault_info info;
    int bad = 0;
    *accesses = 0;
    for (int page = 0; page < 16; page++) {
        size_t got = 0;
        if (smmu_fault_read(c, obj, f, SMMU_FAULTS_PER_READ, &got, &info) != SMMU_OK)
            return 1;
        for (size_t i = 0; i < got; i++) {
            *accesses += f[i].count;
            if (f[i].sid != E->sid || f[i].addr < lo || f[i].addr_last >= lo + len ||
                f[i].dir != SMMU_DIR_WRITE || f[i].reason != SMMU_FAULT_TRANSLATION)
                bad = 1;
        }
        if (info.remaining == 0)
            break;
    }
    return bad;
}

int32_t c_vmm_main(const struct smmu_transport *transport, const struct c_vmm_env *env) {
    E = env;
    smmu_client_t c = SMMU_NO_CLIENT;
    smmu_status rc = smmu_connect(transport, &c);
    CHECK("c-connect", rc == SMMU_OK, (uint64_t)rc);

    struct smmu_passthrough edu = {"edu", SMMU_DEVICE_PCI, env->bus, env->dev, env->func, 0, 1};
    struct smmu_vm vm = {env->name, 0, &edu, 1};
    char msg[200];
    int32_t decision = -1;
    rc = smmu_vmm_decide(c, &vm, msg, sizeof msg, &decision);
    E->say(E->ctx, "decision", msg);
    CHECK("c-decide-start", rc == SMMU_OK && decision == SMMU_DECISION_START, (uint64_t)decision);

    smmu_object_t obj = 0;
    rc = smmu_obj_create(c, 0, &obj);
    CHECK("c-create", rc == SMMU_OK, (uint64_t)rc);
    struct smmu_devices changed = {0, 0};
    rc = smmu_device_add_pci(c, obj, env->bus, env->dev, env->func, &changed);
    CHECK("c-attach-own-device", rc == SMMU_OK && changed.devices == 1, (uint64_t)rc);

    /* The window as an array of two halves. */
    uint64_t half = env->window / 2;
    struct smmu_map_entry ram[2] = {
        {env->guest, env->ram, half, SMMU_ACCESS_READ | SMMU_ACCESS_WRITE, 0},
        {env->guest + half, env->ram + half, half, SMMU_ACCESS_READ | SMMU_ACCESS_WRITE, 0},
    };
    rc = smmu_mapping_add(c, obj, ram, 2);
    CHECK("c-map-array", rc == SMMU_OK, (uint64_t)rc);

    /* The manager's own memory: refused, with its code and message. */
    struct smmu_map_entry steal = {env->guest + 16 * 0x100000ull, env->forbidden, 0x1000,
                                   SMMU_ACCESS_READ | SMMU_ACCESS_WRITE, 0};
    rc = smmu_mapping_add(c, obj, &steal, 1);
    say_error(c, "refusal");
    CHECK("c-manager-memory-refused", rc == SMMU_ERR_NOT_OWNED, (uint64_t)rc);

    /* Inside the window: the device reads guest RAM and writes it back elsewhere. */
    E->fill(E->ctx, 0x1000, DMA_LEN, 21);
    int dma = E->dma_read(E->ctx, env->guest + 0x1000, DMA_LEN);
    dma |= E->dma_write(E->ctx, env->guest + 0x3000, DMA_LEN);
    CHECK("c-dma-inside-lands", dma == 0 && E->holds(E->ctx, 0x3000, DMA_LEN, 21), 0x3000);

    /* Just past the window: blocked, and the faults are this object's. */
    uint64_t rogue = env->guest + env->window;
    E->fill(E->ctx, env->window, 0x1000, 22);
    dma = E->dma_write(E->ctx, rogue, DMA_LEN);
    CHECK("c-dma-outside-blocked", dma == 0 && E->holds(E->ctx, env->window, 0x1000, 22), rogue);
    uint64_t accesses = 0;
    int bad = read_faults(c, obj, rogue, DMA_LEN, &accesses);
    CHECK("c-reads-its-faults", !bad && accesses == DMA_LEN / 4, accesses);

    /* Unmap both halves in one call: the access that worked is gone. */
    struct smmu_range spans[2] = {{env->guest, half}, {env->guest + half, half}};
    uint64_t bytes = 0;
    rc = smmu_mapping_remove(c, obj, spans, 2, &bytes);
    CHECK("c-unmap", rc == SMMU_OK && bytes == env->window, bytes);
    E->fill(E->ctx, 0x3000, 0x1000, 23);
    dma = E->dma_write(E->ctx, env->guest + 0x3000, DMA_LEN);
    CHECK("c-after-unmap-blocked", dma == 0 && E->holds(E->ctx, 0x3000, 0x1000, 23), 0x3000);
    bad = read_faults(c, obj, env->guest + 0x3000, DMA_LEN, &accesses);
    CHECK("c-after-unmap-recorded", !bad && accesses == DMA_LEN / 4, accesses);

    rc = smmu_obj_destroy(c, obj);
    CHECK("c-destroy", rc == SMMU_OK, (uint64_t)rc);
    rc = smmu_obj_destroy(c, obj);
    say_error(c, "destroyed-twice");
    CHECK("c-destroyed-object-gone", rc == SMMU_ERR_NOT_FOUND, (uint64_t)rc);
    CHECK("c-disconnect", smmu_disconnect(c) == SMMU_OK, 0);
    return 0;
}
