/*
 * C helpers for the parallel default mode of create_pretraining_data (pretraining_instances.py).
 *
 * In that mode the only serial work is in the main process: walking the random generator
 * through every draw of the original algorithm (so that workers can replay batches of
 * documents from recorded states) and shuffling the records; workers then copy their records
 * into the output. In
 * Python the walk alone costs about 6 us per instance, a quarter of all sampling work, which
 * capped two workers at about 1.4x one. This module does the same three things in C:
 *
 *   account  the walk of InstanceSampler.account_document over many documents: the same
 *            Mersenne Twister as CPython's random.Random (state taken from getstate() and
 *            returned for setstate()), the same draw methods (random(), getrandbits-based
 *            randrange), in the same order;
 *   shuffle  random.Random.shuffle of a list, the same draws;
 *   scatter  a worker's held records copied to their places in the mapped output files.
 *
 * The Python code stays the reference and the fallback when no compiler was available. The
 * tests compare the two, and at run time every worker checks that its replay ends in the
 * state the walk predicted.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MT_N 624
#define MT_M 397

typedef struct {
    uint32_t mt[MT_N];
    int index;
} Twister;

/* CPython's genrand_uint32 (Modules/_randommodule.c): MT19937 with the standard tempering. */
static uint32_t genrand_uint32(Twister *t) {
    static const uint32_t mag01[2] = {0x0U, 0x9908b0dfU};
    uint32_t y;
    if (t->index >= MT_N) {
        int kk;
        for (kk = 0; kk < MT_N - MT_M; kk++) {
            y = (t->mt[kk] & 0x80000000U) | (t->mt[kk + 1] & 0x7fffffffU);
            t->mt[kk] = t->mt[kk + MT_M] ^ (y >> 1) ^ mag01[y & 0x1U];
        }
        for (; kk < MT_N - 1; kk++) {
            y = (t->mt[kk] & 0x80000000U) | (t->mt[kk + 1] & 0x7fffffffU);
            t->mt[kk] = t->mt[kk + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 0x1U];
        }
        y = (t->mt[MT_N - 1] & 0x80000000U) | (t->mt[0] & 0x7fffffffU);
        t->mt[MT_N - 1] = t->mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 0x1U];
        t->index = 0;
    }
    y = t->mt[t->index++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
}

/* random.Random.random(): 53 bits from two words. */
static double random_double(Twister *t) {
    uint32_t a = genrand_uint32(t) >> 5, b = genrand_uint32(t) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

static int bit_length(uint32_t n) { return n ? 32 - __builtin_clz(n) : 0; }

/* random.Random.randrange(n) for 1 <= n < 2**32: k = n.bit_length() bits until < n. */
static uint32_t randbelow(Twister *t, uint32_t n) {
    int shift = 32 - bit_length(n);
    uint32_t r = genrand_uint32(t) >> shift;
    while (r >= n) r = genrand_uint32(t) >> shift;
    return r;
}

/* Python's round() of a non-negative double: half to even. */
static long round_half_even(double x) {
    double r = floor(x);
    double diff = x - r;
    if (diff > 0.5 || (diff == 0.5 && fmod(r, 2.0) != 0.0)) r += 1.0;
    return (long)r;
}

static int read_state(PyObject *state, Twister *t) {
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != MT_N + 1) {
        PyErr_SetString(PyExc_ValueError, "state must be the 625-tuple of getstate()[1]");
        return -1;
    }
    for (Py_ssize_t i = 0; i <= MT_N; i++) {
        unsigned long value = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(state, i));
        if (value == (unsigned long)-1 && PyErr_Occurred()) return -1;
        if (i < MT_N) {
            t->mt[i] = (uint32_t)value;
        } else {
            if (value > MT_N) {
                PyErr_SetString(PyExc_ValueError, "state index out of range");
                return -1;
            }
            t->index = (int)value;
        }
    }
    return 0;
}

static PyObject *write_state(const Twister *t) {
    PyObject *state = PyTuple_New(MT_N + 1);
    if (state == NULL) return NULL;
    for (Py_ssize_t i = 0; i <= MT_N; i++) {
        PyObject *value = PyLong_FromUnsignedLong(i < MT_N ? t->mt[i] : (unsigned long)t->index);
        if (value == NULL) {
            Py_DECREF(state);
            return NULL;
        }
        PyTuple_SET_ITEM(state, i, value);
    }
    return state;
}

/* Document i is sentences starts[i] .. starts[i + 1] - 1 of lengths: at least one, in range. */
static int valid_document(const int64_t *starts, Py_ssize_t i, Py_ssize_t num_lengths) {
    return starts[i] >= 0 && starts[i + 1] > starts[i] && starts[i + 1] <= num_lengths;
}

PyDoc_STRVAR(account_doc,
"account(state, lengths, starts, first, max_instances, max_num_tokens, max_predictions,\n"
"        masked_lm_prob, short_seq_prob, num_words)\n"
"--\n\n"
"Makes the draws of InstanceSampler.account_document for documents first, first+1, ...\n"
"until at least max_instances instances were counted or the documents end.\n\n"
"state: getstate()[1] of the random.Random. lengths: int32 buffer, every sentence's length\n"
"in document order. starts: int64 buffer of num_documents + 1 offsets into lengths.\n"
"Returns (new_state, next_document, instances, tokens, masked, random_next,\n"
"short_target_passes).");

static PyObject *account(PyObject *self, PyObject *args) {
    PyObject *state;
    Py_buffer lengths_buffer, starts_buffer;
    Py_ssize_t first, max_instances, max_num_tokens, max_predictions, num_words;
    double masked_lm_prob, short_seq_prob;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oy*y*nnnnddn", &state, &lengths_buffer, &starts_buffer, &first,
                          &max_instances, &max_num_tokens, &max_predictions, &masked_lm_prob,
                          &short_seq_prob, &num_words))
        return NULL;

    PyObject *result = NULL;
    Twister t;
    const int32_t *lengths = (const int32_t *)lengths_buffer.buf;
    const int64_t *starts = (const int64_t *)starts_buffer.buf;
    Py_ssize_t num_lengths = lengths_buffer.len / (Py_ssize_t)sizeof(int32_t);
    Py_ssize_t num_documents = starts_buffer.len / (Py_ssize_t)sizeof(int64_t) - 1;
    long long instances = 0, tokens = 0, masked = 0, random_next = 0, short_targets = 0;
    Py_ssize_t d = first;

    if (read_state(state, &t) < 0) goto done;
    if (num_documents < 2 || num_documents > 0xffffffffLL || first < 0 ||
        first > num_documents || starts[num_documents] != num_lengths || max_num_tokens < 2 ||
        num_words < 1 || num_words > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "account: inconsistent arguments");
        goto done;
    }

    while (d < num_documents && instances < max_instances) {
        /* Checked per document touched (a scan of all documents per call would make the walk
           quadratic in the corpus size). */
        if (!valid_document(starts, d, num_lengths)) goto bad_document;
        const int32_t *doc = lengths + starts[d];
        long num_sentences = (long)(starts[d + 1] - starts[d]);
        long target = (long)max_num_tokens;
        if (random_double(&t) < short_seq_prob) {
            target = 2 + (long)randbelow(&t, (uint32_t)(max_num_tokens - 1));
            short_targets++;
        }
        long chunk_start = 0, current = 0, i = 0;
        while (i < num_sentences) {
            current += doc[i];
            if (i == num_sentences - 1 || current >= target) {
                long chunk_size = i + 1 - chunk_start;
                long a_end = 1;
                if (chunk_size >= 2) a_end = 1 + (long)randbelow(&t, (uint32_t)(chunk_size - 1));
                long len_a = 0, len_b = 0;
                for (long s = chunk_start; s < chunk_start + a_end; s++) len_a += doc[s];
                if (chunk_size == 1 || random_double(&t) < 0.5) {
                    random_next++;
                    long target_b = target - len_a;
                    uint32_t other = 0;
                    for (int attempt = 0; attempt < 10; attempt++) {
                        other = randbelow(&t, (uint32_t)num_documents);
                        if ((Py_ssize_t)other != d) break;
                    }
                    const int32_t *other_doc = lengths + starts[other];
                    if (!valid_document(starts, other, num_lengths)) goto bad_document;
                    long other_sentences = (long)(starts[other + 1] - starts[other]);
                    long start = (long)randbelow(&t, (uint32_t)other_sentences);
                    for (long s = start; s < other_sentences; s++) {
                        len_b += other_doc[s];
                        if (len_b >= target_b) break;
                    }
                    i -= chunk_size - a_end;
                } else {
                    for (long s = chunk_start + a_end; s <= i; s++) len_b += doc[s];
                }
                while (len_a + len_b > max_num_tokens) { /* one draw per removed token */
                    random_double(&t);
                    if (len_a > len_b)
                        len_a--;
                    else
                        len_b--;
                }
                long candidates = len_a + len_b;
                long to_predict = round_half_even((double)(candidates + 3) * masked_lm_prob);
                if (to_predict < 1) to_predict = 1;
                if (to_predict > max_predictions) to_predict = (long)max_predictions;
                for (long step = candidates - 1; step >= 1; step--) /* the candidate shuffle */
                    randbelow(&t, (uint32_t)(step + 1));
                long num_masked = to_predict < candidates ? to_predict : candidates;
                for (long m = 0; m < num_masked; m++) { /* 80% [MASK], 10% kept, 10% random */
                    if (random_double(&t) < 0.8) continue;
                    if (random_double(&t) < 0.5) continue;
                    randbelow(&t, (uint32_t)num_words);
                }
                instances++;
                tokens += candidates + 3;
                masked += num_masked;
                chunk_start = i + 1;
                current = 0;
            }
            i++;
        }
        d++;
    }

    PyObject *new_state = write_state(&t);
    if (new_state == NULL) goto done;
    result = Py_BuildValue("NnLLLLL", new_state, d, instances, tokens, masked, random_next,
                           short_targets);
    goto done;
bad_document:
    PyErr_SetString(PyExc_ValueError, "account: every document needs a sentence");
done:
    PyBuffer_Release(&lengths_buffer);
    PyBuffer_Release(&starts_buffer);
    return result;
}

PyDoc_STRVAR(shuffle_doc,
"shuffle(state, items)\n"
"--\n\n"
"Shuffles the list items in place exactly as random.Random.shuffle does with the generator\n"
"whose getstate()[1] is state; returns the generator's new state.");

static PyObject *shuffle(PyObject *self, PyObject *args) {
    PyObject *state, *items;
    Twister t;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!", &state, &PyList_Type, &items)) return NULL;
    if (read_state(state, &t) < 0) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (n > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "shuffle: list longer than 2**32 - 1");
        return NULL;
    }
    /* Draws only: the list cannot change under us (no Python code runs here). */
    PyObject **slots = ((PyListObject *)items)->ob_item;
    for (Py_ssize_t i = n - 1; i >= 1; i--) {
        Py_ssize_t j = (Py_ssize_t)randbelow(&t, (uint32_t)(i + 1));
        PyObject *swap = slots[i];
        slots[i] = slots[j];
        slots[j] = swap;
    }
    return write_state(&t);
}

PyDoc_STRVAR(scatter_doc,
"scatter(blob, targets, out_file, out_offset, first)\n"
"--\n\n"
"Copies the TFRecord-framed records of blob, one after the other, to\n"
"targets[out_file[r]][out_offset[r]:...] for r = first, first + 1, ... (out_file: uint16\n"
"buffer, out_offset: int64 buffer, targets: writable buffers such as mmaps). Returns the\n"
"number of records copied.");

static PyObject *scatter(PyObject *self, PyObject *args) {
    Py_buffer blob, file_buffer, offset_buffer;
    PyObject *target_list, *result = NULL;
    Py_ssize_t first;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*O!y*y*n", &blob, &PyList_Type, &target_list, &file_buffer,
                          &offset_buffer, &first))
        return NULL;
    Py_ssize_t num_targets = PyList_GET_SIZE(target_list);
    Py_ssize_t num_records = offset_buffer.len / (Py_ssize_t)sizeof(int64_t);
    const uint16_t *out_file = (const uint16_t *)file_buffer.buf;
    const int64_t *out_offset = (const int64_t *)offset_buffer.buf;
    Py_buffer *targets = PyMem_Calloc(num_targets ? num_targets : 1, sizeof(Py_buffer));
    Py_ssize_t acquired = 0, record = first;
    if (targets == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (file_buffer.len != num_records * (Py_ssize_t)sizeof(uint16_t) || first < 0) {
        PyErr_SetString(PyExc_ValueError, "scatter: inconsistent arguments");
        goto done;
    }
    for (; acquired < num_targets; acquired++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(target_list, acquired), &targets[acquired],
                               PyBUF_WRITABLE) < 0)
            goto done;
    }
    const unsigned char *data = (const unsigned char *)blob.buf;
    Py_ssize_t position = 0;
    while (position < blob.len) {
        uint64_t length = 0;
        if (position + 8 > blob.len) goto malformed;
        for (int i = 7; i >= 0; i--) length = (length << 8) | data[position + i];
        if (length > (uint64_t)(blob.len - position - 16)) goto malformed;
        Py_ssize_t size = (Py_ssize_t)length + 16;
        if (record >= num_records || out_file[record] >= num_targets || out_offset[record] < 0 ||
            out_offset[record] + size > targets[out_file[record]].len) {
            PyErr_SetString(PyExc_ValueError, "scatter: record out of range");
            goto done;
        }
        memcpy((char *)targets[out_file[record]].buf + out_offset[record], data + position,
               (size_t)size);
        position += size;
        record++;
    }
    result = PyLong_FromSsize_t(record - first);
    goto done;
malformed:
    PyErr_SetString(PyExc_ValueError, "scatter: blob is not a sequence of framed records");
done:
    for (Py_ssize_t i = 0; i < acquired; i++) PyBuffer_Release(&targets[i]);
    PyMem_Free(targets);
    PyBuffer_Release(&blob);
    PyBuffer_Release(&file_buffer);
    PyBuffer_Release(&offset_buffer);
    return result;
}

static PyMethodDef methods[] = {
    {"scatter", scatter, METH_VARARGS, scatter_doc},
    {"account", account, METH_VARARGS, account_doc},
    {"shuffle", shuffle, METH_VARARGS, shuffle_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pretraining_accel",
    "C helpers of create_pretraining_data's parallel mode (see pretraining_instances.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pretraining_accel(void) { return PyModule_Create(&module); }
