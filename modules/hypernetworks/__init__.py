"""Hypernetworks as A1111 has them: files.py finds and reads `models/hypernetworks/**/*.pt` without
running code, network.py rebuilds A1111's key/value MLPs, processor.py applies them through
attention processors for a pass (nothing of the UNet changes), request.py reads a request's
`<hypernet:name:multiplier>` tags."""
