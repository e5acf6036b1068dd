"""
One step of a coordinate-wise LSTM and its linear head as a single autograd Function: the learned optimizer of L2L
(:class:`~art_fastat.attacks.RNNOptimizer`) made cheap on CPUs. It computes what ``nn.LSTMCell`` followed by
``nn.Linear(hidden_size, 1)`` computes, with the same weights, and their first derivatives.

The LSTM runs on every input coordinate: for a batch of 64 CIFAR-10 images that is 196,608 sequences of one element
per step. ``nn.LSTMCell`` computes a step as about fifteen whole-tensor operations and autograd its backward (the
meta-gradient) as about thirty more, each one a pass through memory; its weight gradient is a matrix product
``(4H, R) x (R, 2)`` that CPU BLAS runs badly, and the gates' gradient is assembled from four pieces by a copy. Here:

- a step's gates are one product ``(R, 2 + H + 1) x (2 + H + 1, 4H)`` (input, hidden state and a column of ones for
  the bias), its weight gradient one product ``(2 + H + 1, R) x (R, 4H)``, the gradient to the inputs one
  ``(R, 4H) x (4H, 2 + H)``: the shapes CPU BLAS runs fastest (coordinates as rows, ``R`` the long side);
- ``tanh(x) = 2 sigmoid(2 x) - 1``: one ``sigmoid`` over all four gates (the ``g`` rows of the weights doubled) and
  one for the cell's ``tanh`` (``tanh`` costs about three times ``sigmoid`` on CPUs);
- the backward is written out: it reuses the gate activations the forward saved (no transcendental function in the
  backward) and writes the four gates' gradients into one buffer;
- with one CPU thread the coordinates go block by block (:data:`CPU_BLOCK`), so a block's operands stay in cache
  across the dozen operations that use them. With several threads each operation covers all coordinates at once:
  blocks would turn every operation into many small parallel regions, and on a busy machine each region waits for
  its threads to be scheduled (measured on 2 loaded cores: blocks of 8192 coordinates took 2-4 times as long as
  ``nn.LSTMCell``).

The state ``(h, c)`` is ``nn.LSTMCell``'s (``(R, H)`` each); the gates follow its equations (``c' = f c + i g``,
``h' = o tanh(c')``), in the order ``i, f, o, g`` here. Only first derivatives exist (L2L's meta-gradient is
first-order).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

#: Coordinates per block on one CPU thread: a block's operands (about 100 floats per coordinate) fit in a few MiB.
CPU_BLOCK = 8192

LSTMState = tuple[torch.Tensor, torch.Tensor]


class FusedLSTMStep(torch.autograd.Function):
    """
    ``(u, h', c')`` from the two input features ``x_0, x_1 (R,)`` and ``h, c (R, H)`` (None: zeros, at the first
    step); ``weight (4H, 2 + H + 1)``: rows ``i, f, o, g``, columns input, hidden, bias; ``head (1, H + 1)``: ``w_o,
    b_o``; ``block``: coordinates per block; ``save``: keep what the backward needs.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x_0: torch.Tensor,
        x_1: torch.Tensor,
        h_prev: torch.Tensor | None,
        c_prev: torch.Tensor | None,
        weight: torch.Tensor,
        head: torch.Tensor,
        block: int,
        save: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden, rows = weight.shape[0] // 4, x_0.shape[0]
        inputs = 2 if h_prev is None else 2 + hidden  # with h = 0 its columns are left out
        doubled = torch.cat([weight[: 3 * hidden], 2 * weight[3 * hidden :]])  # g = 2 sigmoid(2x) - 1
        weight_t = torch.cat([doubled[:, :inputs], doubled[:, -1:]], dim=1).T.contiguous()
        kept = rows if save else min(block, rows)  # what the backward reads, or one block's scratch
        z, gates, tanh_c = (weight.new_empty(kept, columns) for columns in (inputs + 1, 4 * hidden, hidden))
        h, c, u = weight.new_empty(rows, hidden), weight.new_empty(rows, hidden), weight.new_empty(rows, 1)
        w_o, b_o, one = head[:, :hidden].T, head[0, hidden:], weight.new_ones(1, 1)
        for start in range(0, rows, block):
            width = min(block, rows - start)
            part = slice(start, start + width)
            kept_part = part if save else slice(0, width)
            pieces = [
                x_0[part, None],
                x_1[part, None],
                *([] if h_prev is None else [h_prev[part]]),
                one.expand(width, 1),
            ]
            z_part = torch.cat(pieces, dim=1, out=z[kept_part])
            a = torch.mm(z_part, weight_t, out=gates[kept_part]).sigmoid_()
            i, f, o, g = a.split(hidden, dim=1)
            g.mul_(2).sub_(1)
            c_part = torch.mul(i, g, out=c[part])
            if c_prev is not None:
                c_part.addcmul_(f, c_prev[part])
            t = torch.mul(c_part, 2, out=tanh_c[kept_part]).sigmoid_().mul_(2).sub_(1)
            torch.addmm(b_o, torch.mul(o, t, out=h[part]), w_o, out=u[part])
        ctx.set_materialize_grads(False)
        ctx.block = block
        if save:
            ctx.save_for_backward(z, c_prev, weight, head, gates, tanh_c, h)
        return u, h, c

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, du: torch.Tensor | None, dh_next: torch.Tensor | None, dc_next: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        z, c_prev, weight, head, gates, tanh_c, h = ctx.saved_tensors
        hidden, (rows, inputs), block = weight.shape[0] // 4, z.shape, ctx.block
        inputs -= 1
        dx = [weight.new_empty(rows) if needed else None for needed in ctx.needs_input_grad[:2]]
        dh_prev = weight.new_empty(rows, hidden) if inputs > 2 else None
        dc_prev = None if c_prev is None else weight.new_empty(rows, hidden)
        d_weight_t, d_head = weight.new_zeros(inputs + 1, 4 * hidden), torch.zeros_like(head)
        w_o, w_x, w_h = head[:, :hidden], weight[:, :2].T.contiguous(), weight[:, 2 : 2 + hidden].contiguous()
        width = min(block, rows)
        d_gates, scratch = weight.new_empty(width, 4 * hidden), weight.new_empty(width, 3 * hidden)
        if du is not None:
            du = du.reshape(rows, 1)
            torch.mm(du.T, h, out=d_head[:, :hidden])
            d_head[:, hidden] = du.sum()
        for start in range(0, rows, block):
            width = min(block, rows - start)
            part = slice(start, start + width)
            i, f, o, g = gates[part].split(hidden, dim=1)
            t = tanh_c[part]
            da = d_gates[:width]
            di, df, do, dg = da.split(hidden, dim=1)
            q = scratch[:width]
            q1, q2, _ = q.split(hidden, dim=1)
            if du is None:  # dh = dL/dh', from the head and from the next step
                dh = q1.zero_() if dh_next is None else q1.copy_(dh_next[part])
            elif dh_next is None:
                dh = torch.mul(du[part], w_o, out=q1)
            else:
                dh = torch.addcmul(dh_next[part], du[part], w_o, out=q1)
            torch.mul(dh, t, out=do)
            dc = dh.mul_(o)
            dc.addcmul_(dc, torch.mul(t, t, out=q2), value=-1)  # tanh'(c') = 1 - tanh(c')^2
            if dc_next is not None:
                dc += dc_next[part]
            torch.mul(dc, g, out=di)
            torch.mul(dc, i, out=dg)
            if c_prev is None:
                df.zero_()
            else:
                torch.mul(dc, c_prev[part], out=df)
                torch.mul(dc, f, out=dc_prev[part])
            s = gates[part, : 3 * hidden]
            da[:, : 3 * hidden].mul_(torch.addcmul(s, s, s, value=-1, out=q))  # sigmoid' = s (1 - s)
            dg.addcmul_(dg, torch.mul(g, g, out=q1), value=-1)  # tanh' = 1 - g^2
            d_weight_t.addmm_(z[part].T, da)
            for d_input, w_input in zip(dx, w_x, strict=True):
                if d_input is not None:
                    torch.mv(da, w_input, out=d_input[part])
            if dh_prev is not None:
                torch.mm(da, w_h, out=dh_prev[part])
        d_weight = torch.zeros_like(weight)
        d_weight[:, :inputs] = d_weight_t[:inputs].T
        d_weight[:, -1] = d_weight_t[-1]
        return *dx, dh_prev, dc_prev, d_weight, d_head, None, None


def lstm_step(
    features: tuple[torch.Tensor, torch.Tensor],
    state: LSTMState | None,
    cell: nn.LSTMCell,
    head: nn.Linear,
    block: int | None = None,
) -> tuple[torch.Tensor, LSTMState]:
    """
    ``u = head(h')`` with ``(h', c') = cell(x, (h, c))`` for every coordinate's input ``x = (x_0, x_1)``, by
    :class:`FusedLSTMStep`: differentiable in the features, the state and the weights of ``cell`` and ``head``.

    :param features: ``(x_0, x_1)``: the two input features, ``(R,)`` each, in the dtype of the weights.
    :param state: ``(h, c)`` as ``cell`` takes it (``(R, hidden_size)`` each), or None (zeros).
    :param cell: The LSTM cell whose weights are used (``input_size=2``, with biases).
    :param head: ``nn.Linear(hidden_size, 1)``.
    :param block: Coordinates per block; default: :data:`CPU_BLOCK` on a CPU with one thread, else all at once.
    :return: ``(u (R,), (h', c'))``.
    """
    hidden, rows = cell.hidden_size, features[0].shape[0]
    if state is not None and tuple(state[0].shape) != (rows, hidden):
        raise ValueError(f"state must be (h, c) of shape {(rows, hidden)} each, got {tuple(state[0].shape)}")
    if block is None:
        block = CPU_BLOCK if features[0].device.type == "cpu" and torch.get_num_threads() == 1 else rows
    weight = torch.cat([cell.weight_ih, cell.weight_hh, (cell.bias_ih + cell.bias_hh)[:, None]], dim=1)
    weight = torch.cat([weight[: 2 * hidden], weight[3 * hidden :], weight[2 * hidden : 3 * hidden]])  # i f o g
    head_weight = torch.cat([head.weight, head.bias[:, None]], dim=1)
    tensors = (*features, *((None, None) if state is None else state), weight, head_weight)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    u, h, c = FusedLSTMStep.apply(*tensors, max(1, block), save)
    return u.view(rows), (h, c)
