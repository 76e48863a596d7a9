/*
 * The test image's C VMM (scenario vmm-c): what the host hands it besides its transport to the
 * manager. The host (scenarios/c_vmm.rs) drives the edu and reads the VM's RAM for
 * it, and prints each check as a CHECK record; the VMM itself reaches the manager only through
 * libsmmu (include/smmu.h). Every pointer is valid for the duration of c_vmm_main.
 */
#ifndef C_VMM_H
#define C_VMM_H

#include <stdint.h>

#include "smmu.h"

struct c_vmm_env {
    void *ctx;
    /* Prints `CHECK vm=<name> step=<step> ok=<ok> value=<value>`; returns ok. */
    int32_t (*check)(void *ctx, const char *step, int32_t ok, uint64_t value);
    /* Prints `C_VMM vm=<name> <key>="<text>"`. */
    void (*say)(void *ctx, const char *key, const char *text);
    /* Fills `len` bytes of the VM's RAM at offset `off` with pattern `seed`. */
    void (*fill)(void *ctx, uint64_t off, uint64_t len, uint8_t seed);
    /* 1 when those bytes still hold pattern `seed`. */
    int32_t (*holds)(void *ctx, uint64_t off, uint64_t len, uint8_t seed);
    /* The edu reads `len` bytes at I/O address `iova` (to its buffer); 0 when it ran. */
    int32_t (*dma_read)(void *ctx, uint64_t iova, uint32_t len);
    /* The edu writes `len` bytes of its buffer at I/O address `iova`; 0 when it ran. */
    int32_t (*dma_write)(void *ctx, uint64_t iova, uint32_t len);
    const char *name;  /* the VM's name */
    uint64_t ram;      /* the VM's RAM, host-physical */
    uint64_t guest;    /* where it starts, guest-physical (the I/O address its device uses) */
    uint64_t window;   /* bytes of it to map for DMA */
    uint64_t forbidden; /* host memory it must not get (the manager's own) */
    uint32_t bus, dev, func, sid; /* its edu */
};

/* Runs the VMM; 0 when every check passed. */
int32_t c_vmm_main(const struct smmu_transport *transport, const struct c_vmm_env *env);

#endif
