"""Drawing a broadcast-view badminton replay: camera, scene, players, shuttle flights.

`train.replay` turns annotated strokes into a timeline and calls these modules frame by frame.
"""
