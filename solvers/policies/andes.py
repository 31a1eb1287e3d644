"""`andes`: the QoE-aware knapsack scheduler of Andes (Liu et al., arXiv 2404.16283).

Taken from the paper:
- every request is a text stream; the scheduler maximizes the total QoE gain over a short
  horizon dt: value_i = QoE_i(served now) - QoE_i(paused for dt), weight_i = its KV context,
  capacity = the KV cache, solved greedily by value/weight;
- the token delivery speed depends on the batch size B, so the knapsack is solved for several B
  between a lower bound (below it every served stream already gets tokens at least as fast as the
  fastest reader reads: smaller batches cannot raise QoE) and an upper bound (the most requests
  that fit in KV, smallest contexts first, capped by max_seqs), keeping the best total gain;
- the knapsack runs only when it can matter: KV nearly full (or waiting work does not fit) or the
  iteration time exceeds the strictest reading pace 1/max(r); otherwise FCFS admission as vLLM;
- preemption throttling: a cap on preemptions per request seen, and the overhead-aware
  refinement (an admit/evict swap is kept only if the admitted request's QoE gain beats the QoE
  lost by every running stream while its prefill stalls the iteration).

What differs: QoE is DESIGN.md's definition (delay area over the ideal area), projected in
closed form from (lag, delay area) instead of the paper's sampled token timeline; the QoE after
dt is projected to completion (with the predicted median output length) rather than truncated at
dt; B is searched on a geometric grid of at most `batch_grid` values rather than every integer;
paused requests keep their KV unless their blocks are needed (the engine's pause semantics).
"""

from __future__ import annotations

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EMPTY, EngineView, Plan, Policy
from solvers.knapsack.greedy import greedy_knapsack
from solvers.policies import signals


class AndesPolicy(Policy):
    name = "andes"

    def __init__(
        self,
        horizon_iterations: float = 50.0,
        kv_trigger: float = 0.95,
        preemption_cap: float = 1.0,
        refine: bool = True,
        batch_grid: int = 4,
        quantile: float = 0.5,
    ) -> None:
        if horizon_iterations <= 0:
            raise ValueError(f"andes: horizon_iterations={horizon_iterations} must be > 0")
        if not 0 < kv_trigger <= 1:
            raise ValueError(f"andes: kv_trigger={kv_trigger} must be in (0, 1]")
        if preemption_cap < 0:
            raise ValueError(f"andes: preemption_cap={preemption_cap} must be >= 0")
        if batch_grid < 1:
            raise ValueError(f"andes: batch_grid={batch_grid} must be >= 1")
        self.horizon_iterations = horizon_iterations
        self.kv_trigger = kv_trigger
        self.preemption_cap = preemption_cap
        self.refine = refine
        self.batch_grid = batch_grid
        self.quantile = quantile
        self._seen = 0  # highest request index + 1 seen (requests seen so far)
        self._preempted = 0

    def reset(self, engine: EngineSpec) -> None:
        self._seen = 0
        self._preempted = 0

    # ---- helpers -------------------------------------------------------------------------------
    def _fcfs(self, view: EngineView) -> Plan:
        order = np.lexsort((view.idx, view.arrival, ~view.resident))
        return Plan(run=view.idx[order])

    def _triggered(self, view: EngineView, blocks: np.ndarray, t_iter: float) -> bool:
        used = view.engine.kv_blocks - view.free_blocks
        if used >= self.kv_trigger * view.engine.kv_blocks:
            return True
        waiting = ~view.resident
        growth = np.where(view.resident, blocks - view.kv_blocks, blocks)
        if growth.sum() > view.free_blocks and waiting.any():
            return True
        rates = view.read_rate[np.isfinite(view.read_rate)]
        return bool(len(rates)) and t_iter > 1.0 / rates.max()

    def _batch_sizes(self, view: EngineView, blocks: np.ndarray, ctx_mean: float) -> np.ndarray:
        engine = view.engine
        fit = int(np.searchsorted(np.cumsum(np.sort(blocks)), engine.kv_blocks, side="right"))
        upper = max(1, min(engine.max_seqs, fit, len(view)))
        rates = view.read_rate[np.isfinite(view.read_rate)]
        pace = 1.0 / rates.max() if len(rates) else np.inf
        lower = 1
        if engine.slot_time is None:
            lat = engine.latency
            per_seq = lat.c_decode + lat.c_ctx * ctx_mean
            lower = int(min((pace - lat.c0) / per_seq, upper)) if per_seq > 0 else upper
        elif engine.slot_time <= pace:
            lower = upper
        lower = int(np.clip(lower, 1, upper))
        return np.unique(np.geomspace(lower, upper, self.batch_grid).round().astype(np.int64))

    # ---- decision ------------------------------------------------------------------------------
    def decide(self, view: EngineView) -> Plan:
        n = len(view)
        if n == 0:
            return Plan(run=EMPTY)
        self._seen = max(self._seen, int(view.idx.max()) + 1)
        engine = view.engine
        blocks, _tokens = signals.kv_weights(view)
        t_now = signals.typical_iteration(view)
        if not self._triggered(view, blocks, t_now):
            return self._fcfs(view)

        total = np.maximum(view.predicted_output(self.quantile), view.generated + 1.0)
        ctx_mean = float(view.computed.mean()) + 1.0
        horizon = self.horizon_iterations * t_now
        streaming = np.isfinite(view.read_rate)
        pre_iters = np.maximum(signals.prefill_iterations(view), 1)
        best_gain, best_taken, best_values = -1.0, EMPTY, np.zeros(n)
        for batch in self._batch_sizes(view, blocks, ctx_mean):
            t_tok = signals.iteration_time(engine, batch, batch * ctx_mean)
            gain = signals.qoe_gain(view, horizon, t_tok, total, pre_iters * t_tok)
            values = np.where(streaming, np.nan_to_num(gain), 0.0)
            # zero-gain streams (full buffers) still fill leftover room, oldest first
            values = values + 1e-9 / (1.0 + view.arrival - view.arrival.min())
            taken = greedy_knapsack(values, blocks[:, None], np.array([engine.kv_blocks], float), max_items=int(batch))
            total_gain = float(values[taken].sum())
            if total_gain > best_gain:
                best_gain, best_taken, best_values = total_gain, taken, values

        chosen = np.zeros(n, dtype=bool)
        chosen[best_taken] = True
        evicted = view.resident & ~chosen
        admitted = ~view.resident & chosen
        if evicted.any() and admitted.any():
            chosen = self._throttle(view, chosen, best_values, blocks, t_now)
            # residents fill whatever the dropped admissions left free (they need no prefill)
            rest = np.flatnonzero(view.resident & ~chosen)
            room = np.array([engine.kv_blocks - blocks[chosen].sum()], dtype=np.float64)
            more = greedy_knapsack(best_values[rest], blocks[rest, None], room,
                                   max_items=max(engine.max_seqs - int(chosen.sum()), 0))
            chosen[rest[more]] = True
        return self._plan(view, chosen, best_values, blocks)

    def _throttle(self, view: EngineView, chosen: np.ndarray, values: np.ndarray, blocks: np.ndarray,
                  t_now: float) -> np.ndarray:
        """Drop admissions that do not pay for their stall or would exceed the preemption cap."""
        chosen = chosen.copy()
        admitted = np.flatnonzero(~view.resident & chosen)
        admitted = admitted[np.argsort(values[admitted], kind="stable")]  # lowest value first
        if self.refine and view.engine.slot_time is None:
            running = view.resident & chosen
            total = np.maximum(view.predicted_output(self.quantile), view.generated + 1.0)
            step = 1e-3  # QoE the running streams lose per second of stall (finite difference)
            base = signals.projected_qoe(view, view.now + t_now, t_now, total)
            later = signals.projected_qoe(view, view.now + t_now + step, t_now, total)
            loss_per_s = float(np.nan_to_num(base - later)[running].sum()) / step
            stall = view.engine.latency.c_prefill * view.prefill_left[admitted]
            pays = values[admitted] > loss_per_s * stall
            chosen[admitted[~pays]] = False
            admitted = admitted[pays]
        budget = self.preemption_cap * self._seen - self._preempted
        for req in admitted:
            if len(self._victims(view, chosen, values, blocks)) <= budget:
                break
            chosen[req] = False
        if len(self._victims(view, chosen, values, blocks)) > budget:
            # no eviction allowed: the residents keep running instead of the dropped admissions
            chosen |= view.resident
        return chosen

    def _victims(self, view: EngineView, chosen: np.ndarray, values: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        """Unchosen residents to evict so the chosen fit (lowest value density first)."""
        need = float(np.where(view.resident, blocks - view.kv_blocks, blocks)[chosen].sum()) - view.free_blocks
        if need <= 0:
            return EMPTY
        victims = np.flatnonzero(view.resident & ~chosen)
        density = values / np.maximum(blocks, 1.0)
        victims = victims[np.argsort(density[victims], kind="stable")]
        k = int(np.searchsorted(np.cumsum(view.kv_blocks[victims]), need, side="left")) + 1
        return victims[:k]

    def _plan(self, view: EngineView, chosen: np.ndarray, values: np.ndarray, blocks: np.ndarray) -> Plan:
        """Run the chosen requests (highest value density first), evicting only what they need."""
        density = values / np.maximum(blocks, 1.0)
        run_pos = np.flatnonzero(chosen)
        run_pos = run_pos[np.argsort(-density[run_pos], kind="stable")]
        victims = self._victims(view, chosen, values, blocks)
        self._preempted += len(victims)
        return Plan(run=view.idx[run_pos], preempt=view.idx[victims])
