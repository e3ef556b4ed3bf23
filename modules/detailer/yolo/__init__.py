"""YOLOv8 detectors (ADetailer's face/hand/person models and Easel's demo shape detector), run by Easel's
own network and a loader that never executes a pickle: network.py (the layers), files.py (reading and
writing the files), detector.py (prediction as ultralytics does it)."""
