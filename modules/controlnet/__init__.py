"""ControlNet as sd-webui-controlnet (v1.1.455) defines it for its clients: units as the API sends
them (`units`), the models in models/ControlNet (`catalog`, `models`), preprocessing the control
image (`preprocess`), and the residuals each unit adds to the UNet at each step, with the
extension's control modes and guidance window (`apply`)."""
