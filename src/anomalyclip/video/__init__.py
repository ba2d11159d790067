"""Frame features from video (METHOD §12), and scores drawn back onto it.

* `decode`: frames of a video file (PyAV) or a frame folder
* `preprocess`: CLIP's resize, centre crop and normalisation
* `encoder`: the CLIP image tower; `precision`: its number format; `cpu_memory`: reusing freed
  activations on the CPU; `flops`: its arithmetic per frame and the frame-rate floor
* `pipeline`: one video through decode -> preprocess -> encode, stages overlapping
* `frames`: decoded frames kept for a second use without decoding again
* `jobs`, `store`, `runner`: the resumable, shardable extraction job; `completeness`: videos cut short
* `world`, `launch`, `shards`: its ranks (torchrun's or `--devices`'), and which videos each extracts
* `predict`: `predict --video`, from a video to scores and files
* `overlay`: the annotated video
"""
