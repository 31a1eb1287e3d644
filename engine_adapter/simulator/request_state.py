"""Per-request simulator state as numpy columns.

Two layouts live side by side:
- request-indexed arrays (index i = Instance.requests[i]): static facts, release/finish times
  and the admission/preemption lists of the timelines (only for requests that have any);
- live-slot columns: the state of the requests that are live now (released, not finished),
  packed into slots 0..n_live-1 of a few 2-D arrays. An `EngineView` is then a set of cheap
  slices, and the hot loop works on small packed arrays instead of indexing all n requests.
  Their capacity doubles when the live set outgrows it (`generation` counts the moves, so that
  cached slices can be renewed): memory follows the most requests live at once, not n.

Removing a finished request moves the last live slot into its place, so slot order is arbitrary;
`slot_of[i]` maps a request index to its slot (-1 when not live).

Token times live in an arena (`TokenArena`) that holds the live requests' tokens only: a request
gets its segment when it is released and gives it up when it leaves, so memory follows the live
set, not the run's total token count (a million-request run delivers hundreds of millions).
"""

from __future__ import annotations

import numpy as np

from formulations.instance import Instance

# Rows of the integer and float slot matrices (named views are attributes of LiveState).
INT_ROWS = ("idx", "prompt_len", "output_len", "generated", "computed", "prefill_left", "kv_blocks",
            "preemptions", "group", "admit_seq", "token_base", "refined_at", "folded",
            "cached", "hit_held")
FLOAT_ROWS = ("arrival", "release", "ttft_target", "read_rate", "deadline", "lag", "delay_area",
              "peak", "ideal1", "inv_rate")
SLOT_ARRAYS = ("ints", "floats", "cls", "resident", "is_latency", "pred", "pred_refined")  # slot-indexed
INITIAL_SLOTS = 1024  # live slots to start with (doubled as needed)


class LiveState:
    """Live requests packed in slots; every column name in INT_ROWS/FLOAT_ROWS is a row view.

    `computed` counts tokens whose KV exists (on the device when `resident`, on the host for a
    swapped-out request); `token_base` is the request's offset in the token-time buffer; `peak`
    is the running max of delivered_j - (j-1)/r of its tokens (formulations.qoe closed form),
    `ideal1` = arrival + ttft_target, `inv_rate` = 1/read_rate (latency class only); a
    conversation's later turn's `arrival` row is when its user sent it (`sent`, set by the engine
    when its previous turn finishes: formulations/turns.py). `lag`,
    `delay_area` and `peak` include the first `folded` tokens only (stream_qoe.py brings them up
    to date when a policy reads them).
    `cached`/`hit_held`: a waiting request's prefix-cache hit in tokens and its hit blocks that
    are not free (prefix_cache.py; 0 for resident requests and without prefix caching).
    `pred_refined` caches the predictor's refined quantiles of a slot, valid while `generated`
    equals `refined_at` (-1: never refined); see view.py.
    """

    idx: np.ndarray
    prompt_len: np.ndarray
    output_len: np.ndarray
    generated: np.ndarray
    computed: np.ndarray
    prefill_left: np.ndarray
    kv_blocks: np.ndarray
    preemptions: np.ndarray
    group: np.ndarray
    admit_seq: np.ndarray
    token_base: np.ndarray
    refined_at: np.ndarray
    folded: np.ndarray
    cached: np.ndarray
    hit_held: np.ndarray
    arrival: np.ndarray
    release: np.ndarray
    ttft_target: np.ndarray
    read_rate: np.ndarray
    deadline: np.ndarray
    lag: np.ndarray
    delay_area: np.ndarray
    peak: np.ndarray
    ideal1: np.ndarray
    inv_rate: np.ndarray

    def __init__(self, instance: Instance, predictions: np.ndarray) -> None:
        table = instance.table
        n = len(table)
        self.n_requests = n
        self.generation = 0
        self._allocate(min(n, INITIAL_SLOTS), predictions.shape[1])
        self.n_live = 0
        self.slot_of = np.full(n, -1, dtype=np.int64)

        # Request-indexed static facts, copied into a slot on release: only the rows that differ
        # between requests (the others start at their default), request-major so that releasing
        # a few requests gathers whole rows (cheap).
        rate = table.read_rate
        latency = table.cls == 0
        static_ints = {"idx": np.arange(n), "prompt_len": table.prompt_len, "output_len": table.output_len,
                       "prefill_left": table.prompt_len, "group": table.group}
        static_floats = {"arrival": table.arrival, "ttft_target": table.ttft_target, "read_rate": rate,
                         "deadline": table.deadline,
                         "ideal1": np.where(latency, table.arrival + table.ttft_target, 0.0),
                         "inv_rate": np.where(latency, 1.0 / np.where(latency, rate, 1.0), 0.0)}
        self._static_int_rows = np.array([INT_ROWS.index(name) for name in static_ints])
        self._static_float_rows = np.array([FLOAT_ROWS.index(name) for name in static_floats])
        self._static_ints = np.ascontiguousarray(np.stack(list(static_ints.values()), axis=1), dtype=np.int64)
        self._static_floats = np.ascontiguousarray(np.stack(list(static_floats.values()), axis=1), dtype=np.float64)
        self._int_defaults = np.array([[-1 if name == "refined_at" else 0] for name in INT_ROWS], dtype=np.int64)
        self._float_defaults = np.array([[-np.inf if name == "peak" else 0.0] for name in FLOAT_ROWS])
        self._static_cls = table.cls
        self._static_latency = latency
        self._static_turn = table.after >= 0
        self._any_turn = bool(self._static_turn.any())
        self._arrival_row = FLOAT_ROWS.index("arrival")
        self._ideal1_row = FLOAT_ROWS.index("ideal1")
        self._predictions = predictions
        self._release_row = FLOAT_ROWS.index("release")
        self.tokens = TokenArena()

        # Request-indexed results.
        self.release_time = np.full(n, np.nan)
        self.finish_time = np.full(n, np.nan)
        self.reject_time = np.full(n, np.nan)  # rejected by the policy (Plan.reject), unserved
        self.sent = np.full(n, np.nan)  # a later turn: when its user sent it
        self.admissions: dict[int, list[float]] = {}  # request index -> times, until its timeline is out
        self.preemption_times: dict[int, list[float]] = {}

    @property
    def token_times(self) -> np.ndarray:
        """The arena's buffer: a live slot's tokens are token_times[token_base[s] + j], j < generated[s]."""
        return self.tokens.buffer

    def delivered(self, slot: int) -> np.ndarray:
        """The token times of live `slot` so far (a view, valid until the next release)."""
        base = int(self.token_base[slot])
        return self.tokens.buffer[base:base + int(self.generated[slot])]

    def _allocate(self, capacity: int, quantiles: int) -> None:
        """Live-slot columns of `capacity` slots, the live ones (if any) copied over."""
        n = self.n_live if hasattr(self, "n_live") else 0
        old = {name: getattr(self, name) for name in SLOT_ARRAYS} if n else {}
        self.ints = np.zeros((len(INT_ROWS), capacity), dtype=np.int64)
        self.floats = np.zeros((len(FLOAT_ROWS), capacity), dtype=np.float64)
        self.cls = np.zeros(capacity, dtype=np.int8)
        self.resident = np.zeros(capacity, dtype=bool)
        self.is_latency = np.zeros(capacity, dtype=bool)
        self.pred = np.zeros((capacity, quantiles), dtype=np.float64)
        self.pred_refined = np.zeros_like(self.pred)
        for name, values in old.items():  # the slot axis is the matrices' second, the others' first
            if name in ("ints", "floats"):
                getattr(self, name)[:, :n] = values[:, :n]
            else:
                getattr(self, name)[:n] = values[:n]
        for k, name in enumerate(INT_ROWS):
            setattr(self, name, self.ints[k])
        for k, name in enumerate(FLOAT_ROWS):
            setattr(self, name, self.floats[k])
        self.generation += 1

    def add(self, requests: np.ndarray, now: float) -> None:
        """Make requests live (released at `now`), appended after the last live slot."""
        k = len(requests)
        lo, hi = self.n_live, self.n_live + k
        if hi > self.ints.shape[1]:
            self._allocate(max(hi, 2 * self.ints.shape[1]), self.pred.shape[1])
        self.ints[:, lo:hi] = self._int_defaults
        self.ints[self._static_int_rows, lo:hi] = self._static_ints[requests].T
        self.floats[:, lo:hi] = self._float_defaults
        self.floats[self._static_float_rows, lo:hi] = self._static_floats[requests].T
        self.floats[self._release_row, lo:hi] = now
        turn = self._static_turn[requests] if self._any_turn else None
        if turn is not None and turn.any():  # its reading clock starts when its user sent it
            cols = lo + np.flatnonzero(turn)
            sent = self.sent[requests[turn]]
            self.floats[self._arrival_row, cols] = sent
            self.floats[self._ideal1_row, cols] = sent + self.floats[FLOAT_ROWS.index("ttft_target"), cols]
        self.cls[lo:hi] = self._static_cls[requests]
        self.is_latency[lo:hi] = self._static_latency[requests]
        self.resident[lo:hi] = False
        self.pred[lo:hi] = self._predictions[requests]
        self.token_base[lo:hi] = self.tokens.allocate(self.output_len[lo:hi], self.token_base[:lo],
                                                      self.generated[:lo], self.output_len[:lo])
        self.slot_of[requests] = np.arange(lo, hi)
        self.release_time[requests] = now
        self.n_live = hi

    def remove(self, slots: list[int]) -> None:
        """Drop finished requests (their token segments go back to the arena); the last live slot
        moves into each freed one."""
        self.tokens.free(int(self.output_len[slots].sum()))
        for s in sorted(slots, reverse=True):
            last = self.n_live - 1
            self.slot_of[self.idx[s]] = -1
            if s != last:
                self.ints[:, s] = self.ints[:, last]
                self.floats[:, s] = self.floats[:, last]
                self.cls[s] = self.cls[last]
                self.is_latency[s] = self.is_latency[last]
                self.resident[s] = self.resident[last]
                self.pred[s] = self.pred[last]
                self.pred_refined[s] = self.pred_refined[last]
                self.slot_of[self.idx[s]] = s
            self.n_live = last


class TokenArena:
    """One float64 buffer holding the token times of the live requests, each in a segment of its
    output length. Segments are handed out at the top; when the top would pass the end, the live
    segments are copied to the front of a buffer twice their size (so copying costs O(1) per token
    over a run) and their bases returned. `live` is the total length of the segments held."""

    INITIAL = 1 << 16

    def __init__(self) -> None:
        self.buffer = np.empty(self.INITIAL, dtype=np.float64)
        self.top = 0
        self.live = 0

    def allocate(self, lengths: np.ndarray, bases: np.ndarray, filled: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Segments of `lengths` for new requests; `bases`, `filled` and `sizes` (updated in place
        if the live segments move) describe the segments held now and how much of each is written."""
        need = int(lengths.sum())
        if self.top + need > len(self.buffer):
            self._compact(bases, filled, sizes, need)
        start = self.top + np.cumsum(lengths) - lengths
        self.top += need
        self.live += need
        return start

    def free(self, tokens: int) -> None:
        self.live -= tokens

    def _compact(self, bases: np.ndarray, filled: np.ndarray, sizes: np.ndarray, need: int) -> None:
        moved = np.cumsum(sizes) - sizes
        buffer = np.empty(max(len(self.buffer), 2 * (self.live + need)), dtype=np.float64)
        total = int(filled.sum())
        if total:
            within = np.arange(total) - np.repeat(np.cumsum(filled) - filled, filled)
            buffer[np.repeat(moved, filled) + within] = self.buffer[np.repeat(bases, filled) + within]
        bases[:] = moved
        self.buffer = buffer
        self.top = self.live
