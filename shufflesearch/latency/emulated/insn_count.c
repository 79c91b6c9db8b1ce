/*
 * QEMU TCG plugin: count aarch64 guest instructions between markers the guest emits.
 *
 * The guest brackets the code to measure with a failing syscall that carries a magic
 * argument: lseek(-1, MARKER_MAGIC + 1, 0) starts counting on the calling thread,
 * lseek(-1, MARKER_MAGIC + 2, 0) stops it and appends one line to the output file:
 *
 *     run <total> <class 0 count> ... <class N-1 count>
 *
 * lseek(-1, MARKER_MAGIC + 3, i) between brackets writes "model <i>": a guest that counts
 * many models in one process labels the brackets that follow with the model's index.
 *
 * Counting is per translation block: a block's instructions are classified once, at
 * translation, and added in the block's execution callback (cheap, and exact because
 * the marker syscall always ends a block). Only the vCPU (guest thread) that emitted the
 * start marker is counted, so ONNX Runtime's helper threads never leak in.
 *
 * Build: gcc -O2 -fPIC -shared $(pkg-config --cflags glib-2.0) -I<dir of qemu-plugin.h>
 *        insn_count.c -o insn_count.so $(pkg-config --libs glib-2.0)
 * Use:   qemu-aarch64 -plugin insn_count.so,out=/tmp/counts.txt -d plugin ...
 */
#include <glib.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MARKER_MAGIC 0x5348554600000000ULL /* "SHUF" in the high bytes */
#define MARKER_START 1
#define MARKER_STOP 2
#define MARKER_MODEL 3
#define AARCH64_NR_LSEEK 62

/* Keep in sync with INSTRUCTION_CLASSES in count.py (same order). */
enum insn_class {
    CLASS_SIMD_DOT,  /* SDOT/UDOT, vector and by-element, any Q (U bit 29 and Q bit 30 masked out) */
    CLASS_SIMD_DP,   /* other Advanced SIMD and scalar FP data processing */
    CLASS_SIMD_LDST, /* loads/stores of SIMD&FP registers */
    CLASS_SVE,       /* SVE (never expected with a pinned non-SVE -cpu) */
    CLASS_LDST,      /* loads/stores of general-purpose registers */
    CLASS_BRANCH,    /* branches, exception generation, system */
    CLASS_OTHER,     /* integer data processing and everything else */
    N_CLASSES
};

typedef struct {
    uint64_t counts[N_CLASSES];
} block_counts;

static FILE *out;
static GMutex lock;
static gint active_vcpu = -1; /* guest thread (vCPU) being counted, -1 when idle */
static uint64_t totals[N_CLASSES];
static GPtrArray *blocks; /* every block_counts ever allocated, freed at exit */

static enum insn_class classify(uint32_t insn)
{
    uint32_t op0 = (insn >> 25) & 0xf; /* A64 top-level encoding group, bits 28:25 */
    if ((op0 & 0x7) == 0x7) {          /* x111: data processing, SIMD & FP */
        if ((insn & 0x9f20fc00) == 0x0e009400 || (insn & 0x9f00f400) == 0x0f00e000) {
            return CLASS_SIMD_DOT;
        }
        return CLASS_SIMD_DP;
    }
    if ((op0 & 0x5) == 0x4) { /* x1x0: loads and stores, bit 26 selects SIMD&FP registers */
        return (insn >> 26) & 1 ? CLASS_SIMD_LDST : CLASS_LDST;
    }
    if (op0 == 0x2) {
        return CLASS_SVE;
    }
    if ((op0 & 0xe) == 0xa) { /* 101x: branches, exceptions, system */
        return CLASS_BRANCH;
    }
    return CLASS_OTHER;
}

static void block_exec(unsigned int vcpu_index, void *udata)
{
    /* Only the counted thread writes totals; others merely read active_vcpu. */
    if ((gint)vcpu_index != g_atomic_int_get(&active_vcpu)) {
        return;
    }
    const block_counts *bc = udata;
    for (int i = 0; i < N_CLASSES; i++) {
        totals[i] += bc->counts[i];
    }
}

static void block_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    block_counts *bc = g_new0(block_counts, 1);
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t word = 0;
        memcpy(&word, qemu_plugin_insn_data(insn), MIN(sizeof(word), qemu_plugin_insn_size(insn)));
        bc->counts[classify(GUINT32_FROM_LE(word))]++;
    }
    g_mutex_lock(&lock);
    g_ptr_array_add(blocks, bc);
    g_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, block_exec, QEMU_PLUGIN_CB_NO_REGS, bc);
}

static void syscall_entry(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                          uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num != AARCH64_NR_LSEEK || a1 != UINT64_MAX || (a2 & ~0xffULL) != MARKER_MAGIC) {
        return;
    }
    uint64_t code = a2 & 0xff;
    g_mutex_lock(&lock);
    gint current = g_atomic_int_get(&active_vcpu);
    if (code == MARKER_MODEL && current == -1) {
        fprintf(out, "model %" PRIu64 "\n", a3);
        fflush(out);
    } else if (code == MARKER_START && current == -1) {
        memset(totals, 0, sizeof(totals));
        g_atomic_int_set(&active_vcpu, (gint)vcpu_index);
    } else if (code == MARKER_STOP && current == (gint)vcpu_index) {
        g_atomic_int_set(&active_vcpu, -1);
        uint64_t sum = 0;
        for (int i = 0; i < N_CLASSES; i++) {
            sum += totals[i];
        }
        fprintf(out, "run %" PRIu64, sum);
        for (int i = 0; i < N_CLASSES; i++) {
            fprintf(out, " %" PRIu64, totals[i]);
        }
        fputc('\n', out);
        fflush(out);
    } else {
        /* Unbalanced markers, or a stop from another thread: the host reports this as an error. */
        fprintf(out, "error marker %" PRIu64 " from vcpu %u while active vcpu %d\n", code, vcpu_index,
                current);
        fflush(out);
    }
    g_mutex_unlock(&lock);
}

static void plugin_exit(qemu_plugin_id_t id, void *p)
{
    g_mutex_lock(&lock);
    fprintf(out, "exit\n");
    fclose(out);
    g_ptr_array_free(blocks, TRUE);
    g_mutex_unlock(&lock);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (g_str_has_prefix(argv[i], "out=")) {
            path = argv[i] + 4;
        }
    }
    if (path == NULL || strcmp(info->target_name, "aarch64") != 0) {
        fprintf(stderr, "insn_count: needs out=FILE and an aarch64 guest\n");
        return -1;
    }
    out = fopen(path, "w");
    if (out == NULL) {
        perror("insn_count: cannot open output");
        return -1;
    }
    fprintf(out, "classes %d\n", N_CLASSES);
    fflush(out);
    blocks = g_ptr_array_new_with_free_func(g_free);
    qemu_plugin_register_vcpu_tb_trans_cb(id, block_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, syscall_entry);
    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
    return 0;
}
