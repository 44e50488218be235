"""Training loops, one per set-up of the paper, each built on ``dni_utils.mechanism``:

- ``feedforward``: Bprop, No Bprop, DNI and cDNI on stacks of blocks (notebooks 01, 02, 03, 09);
- ``unlock``: the complete unlock with synthetic inputs and gradients (notebook 04);
- ``recurrent``: truncated BPTT with DNI at the truncation boundaries, the Copy tasks (notebook 05)
  and the recurrent core shared with ``language_model`` (notebook 06) and ``timescales`` (07);
- ``parallel``: one process per stage, the decoupled pipeline (notebook 08).
"""
