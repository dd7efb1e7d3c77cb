"""Drawing and sounding a broadcast-view badminton replay: camera, scene, players, shuttle flights,
cut-aways between rallies (`cutaways`), the sound track (`audio`) and the H.264 + AAC writer (`encode`).

`train.replay` turns annotated strokes into a timeline and calls these modules frame by frame.
"""
