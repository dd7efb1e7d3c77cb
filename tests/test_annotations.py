"""Stroke table import: real ShuttleSet excerpts, sides across end changes, zones, errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.annotations import (AnnotationError, load_annotations, load_reference_csv,
                              load_shuttleset_set, write_reference_csv)
from core.court import COURT_WIDTH, NET_Y, Court

DATA = Path(__file__).parent / "data" / "shuttleset"
MATCH = "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals"
SHUTTLESET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "shuttleset"  # beside the repository
HEADER = ("rally,ball_round,time,frame_num,roundscore_A,roundscore_B,player,server,type,aroundhead,"
          "backhand,hit_height,hit_area,hit_x,hit_y,landing_height,landing_area,landing_x,landing_y,"
          "lose_reason,win_reason,getpoint_player,flaw,player_location_area,player_location_x,"
          "player_location_y,opponent_location_area,opponent_location_x,opponent_location_y,db")


def load_set(n: int):
    return load_shuttleset_set(DATA / MATCH / f"set{n}.csv")


def fixture_court() -> Court:
    return load_set(1).court


def a_side_by_rally(table) -> dict[int, str]:
    sides = {}
    for s in table.strokes:
        if s.player == "A":
            assert sides.setdefault(s.rally, s.side) == s.side, "A changed half inside a rally"
    return sides


def row(**cells) -> str:
    cols = HEADER.split(",")
    return ",".join(str(cells.get(c, "")) for c in cols)


def write_set(folder: Path, rows: list[str], name: str = "set1.csv", encoding: str = "utf-8") -> Path:
    """A set file in a ShuttleSet-shaped folder that shares the fixture's match.csv/homography.csv."""
    (folder / MATCH).mkdir(parents=True, exist_ok=True)
    for f in ("match.csv", "homography.csv"):
        shutil.copy(DATA / f, folder / f)
    path = folder / MATCH / name
    path.write_bytes(("\n".join([HEADER, *rows]) + "\n").encode(encoding))
    return path


# ---------------------------------------------------------------- real excerpt


def test_excerpt_metadata_players_fps_and_ids():
    t = load_set(1)
    # match.csv: winner Kento MOMOTA is A, loser CHOU Tien Chen is B
    assert t.players == {"A": "Kento MOMOTA", "B": "CHOU Tien Chen"}
    assert t.fps == 25.0  # frame 96800 at 1:04:32 (3872 s) in set 3 -> 25.0 fps; same broadcast
    first = t.strokes[0]
    assert (first.match, first.set, first.rally, first.ball_round) == (MATCH, 1, 1, 1)
    assert first.stroke_id == f"{MATCH}_1_{first.frame}"
    assert first.time_s == pytest.approx(first.frame / 25.0)
    assert {s.player_name for s in t.strokes} == {"Kento MOMOTA", "CHOU Tien Chen"}
    # consecutive strokes of a rally are hit by alternating players, from alternating halves
    for a, b in zip(t.strokes, t.strokes[1:]):
        if a.rally == b.rally:
            assert a.player != b.player and a.side != b.side


def test_sides_change_between_sets_and_at_11_in_the_deciding_set():
    s1, s2, s3 = (a_side_by_rally(load_set(n)) for n in (1, 2, 3))
    # match.csv downcourt=1: A (MOMOTA) starts the match in the upper (far) half
    assert set(s1.values()) == {"upper"}
    assert set(s2.values()) == {"bottom"}  # ends changed after set 1
    # set 3: same end as set 1 until A reaches 11 points (rally 21 ends 11-10), then they change
    assert s3[1] == s3[20] == s3[21] == "upper"
    assert s3[22] == s3[23] == "bottom"
    t3 = load_set(3)
    assert [(s.score_a, s.score_b) for s in t3.strokes if s.rally == 21][0] == (11, 10)


def test_sides_agree_with_positions_against_the_net_in_the_image():
    """Independent check in pixels: the net line's image y at the player's x vs the player's feet."""
    for n in (1, 2, 3):
        t = load_set(n)
        court = t.court
        net_l, net_r = court.to_image(0.0, NET_Y), court.to_image(COURT_WIDTH, NET_Y)
        agree = total = 0
        for s in t.strokes:
            if s.player_xy is None:
                continue
            x, y = s.player_xy
            net_y = net_l[1] + (net_r[1] - net_l[1]) * (x - net_l[0]) / (net_r[0] - net_l[0])
            total += 1
            agree += (y < net_y) == (s.side == "upper")
        assert total > 10 and agree / total > 0.95


def test_labels_mapped_and_unknown_reported():
    t1, t2 = load_set(1), load_set(2)
    drops = [s for s in t1.strokes if s.type_zh == "過渡切球"]
    assert drops and all(s.stroke == "drop" and s.type_en == "passive drop" for s in drops)
    assert not any(s.type_zh == "過度切球" for s in t1.strokes)  # the spelling variant is mapped
    unknown = [s for s in t2.strokes if s.type_zh == "未知球種"]
    assert len(unknown) == t2.report.unknown_labels == 1  # rally 3, stroke 2 of the excerpt
    assert unknown[0].stroke is None and unknown[0].caption is None
    assert "1 unknown type" in t2.report.summary()


def test_real_zone_and_caption_of_a_backcourt_stroke():
    t = load_set(1)
    court = t.court
    for s in t.strokes:
        if s.hit_xy is None or s.zone is None:
            continue
        x, y = court.to_court(*s.hit_xy)
        depth = abs(y - NET_Y)
        if depth > 4.5:  # deep: a backcourt zone
            assert s.zone in (3, 4, 9)
        elif depth < 2.2:
            assert s.zone in (1, 2, 7)
        else:
            assert s.zone == 5
    s = next(s for s in t.strokes if s.stroke and s.zone)
    assert s.caption.startswith(f"{s.side} player hits a {s.stroke} ")


def test_serve_zone_comes_from_the_server_position():
    serves = [s for n in (1, 2, 3) for s in load_set(n).strokes if s.ball_round == 1 and s.player_xy]
    assert serves and all(s.hit_xy is None for s in serves)
    # a server stands in the middle depth band (1.98 m short service line .. back), never in the net zone
    assert all(s.zone in (5, 3, 4, 9) for s in serves)


# ---------------------------------------------------------------- zones on constructed points


@pytest.mark.parametrize("metres, zone", [
    ((1.0, 12.9), 4),   # near baseline, camera-left third: left backcourt
    ((5.2, 12.9), 3),   # near baseline, camera-right third: right backcourt
    ((3.05, 0.5), 9),   # far baseline, centre: backcourt (upper half, same camera-left/right)
    ((0.5, 0.5), 4),    # far baseline, camera-left: still "left" (camera view, not the hitter's)
    ((5.5, 7.5), 1),    # 0.8 m from the net, camera-right: right side of the net
    ((0.6, 5.9), 2),    # upper half, 0.8 m from the net, camera-left
    ((3.05, 7.2), 7),   # at the net, centre
    ((3.05, 9.9), 5),   # 3.2 m from the net: middle
])
def test_zone_from_hit_point_in_court_metres(tmp_path, metres, zone):
    px, py = fixture_court().to_image(*metres)
    path = write_set(tmp_path, [row(rally=1, ball_round=2, time="0:00:10", frame_num=250, player="A",
                                    type="殺球", hit_x=f"{px:.2f}", hit_y=f"{py:.2f}")])
    s = load_shuttleset_set(path).strokes[0]
    assert s.zone == zone and s.stroke == "smash"


def test_rows_without_any_point_have_no_zone_and_are_counted(tmp_path):
    path = write_set(tmp_path, [row(rally=1, ball_round=1, frame_num=10, player="A", type="發短球")])
    t = load_shuttleset_set(path)
    assert t.strokes[0].zone is None and t.strokes[0].caption is None
    assert t.report.rows_without_zone == 1


def test_without_match_and_homography_side_from_relative_positions(tmp_path):
    folder = tmp_path / "loose"
    folder.mkdir()
    shutil.copy(DATA / MATCH / "set3.csv", folder / "set3.csv")
    bare = load_shuttleset_set(folder / "set3.csv")
    full = load_set(3)
    assert bare.court is None and bare.players == {} and bare.report.warnings
    assert all(s.zone is None for s in bare.strokes)
    assert [s.side for s in bare.strokes] == [s.side for s in full.strokes]


def test_vote_contradicting_downcourt_is_warned(tmp_path):
    path = write_set(tmp_path, [(DATA / MATCH / "set1.csv").read_text().splitlines()[i] for i in range(1, 8)],
                     name="set2.csv")  # set-1 rows renamed set 2: positions say A upper, the rule says bottom
    t = load_shuttleset_set(path)
    assert any("downcourt" in w for w in t.report.warnings)
    assert a_side_by_rally(t)[1] == "upper"  # the positions win


# ---------------------------------------------------------------- errors and encodings


def test_missing_required_column_names_file_and_column(tmp_path):
    path = tmp_path / "set1.csv"
    path.write_text("rally,ball_round,player,type\n1,1,A,殺球\n", encoding="utf-8")
    with pytest.raises(AnnotationError) as err:
        load_shuttleset_set(path)
    assert "set1.csv" in str(err.value) and "frame_num" in str(err.value)
    assert err.value.column == "frame_num"


def test_bad_number_names_file_row_and_column(tmp_path):
    rows = [row(rally=1, ball_round=1, frame_num=10, player="A", type="發短球"),
            row(rally=1, ball_round=2, frame_num="12x", player="B", type="挑球")]
    path = write_set(tmp_path, rows)
    with pytest.raises(AnnotationError) as err:
        load_shuttleset_set(path)
    msg = str(err.value)
    assert str(path) in msg and "row 2" in msg and "'frame_num'" in msg and "12x" in msg
    assert (err.value.row, err.value.column) == (2, "frame_num")


@pytest.mark.parametrize("col, value", [("frame_num", "99999999999999999999999"), ("frame_num", "1e308"),
                                        ("rally", str(2 ** 63))])
def test_oversized_whole_numbers_are_refused_by_name(tmp_path, col, value):
    cells = dict(rally=1, ball_round=1, frame_num=10, player="A", type="發短球")
    cells[col] = value
    path = write_set(tmp_path, [row(**cells)])
    with pytest.raises(AnnotationError, match="number too large") as err:
        load_shuttleset_set(path)
    assert (err.value.row, err.value.column) == (1, col)


def test_bad_coordinate_is_an_error_not_a_silent_gap(tmp_path):
    path = write_set(tmp_path, [row(rally=1, ball_round=2, frame_num=10, player="A", type="殺球", hit_x="abc", hit_y=3)])
    with pytest.raises(AnnotationError, match=r"row 1, column 'hit_x'"):
        load_shuttleset_set(path)


@pytest.mark.parametrize("encoding, label", [("cp950", "殺球"), ("big5", "挑球"), ("latin-1", "smash é")])
def test_wrong_encoding_names_file_row_and_column(tmp_path, encoding, label):
    rows = [row(rally=1, ball_round=1, frame_num=10, player="A", type="serve"),
            row(rally=1, ball_round=2, frame_num=20, player="B", type=label)]
    path = write_set(tmp_path, rows, encoding=encoding)
    with pytest.raises(AnnotationError) as err:
        load_shuttleset_set(path)
    assert "UTF-8" in str(err.value) and str(path) in str(err.value)
    assert (err.value.row, err.value.column) == (2, "type")


def test_utf8_with_bom_reads_like_utf8(tmp_path):
    rows = [row(rally=1, ball_round=1, frame_num=10, player="A", type="發短球")]
    plain = load_shuttleset_set(write_set(tmp_path / "a", rows))
    bom = load_shuttleset_set(write_set(tmp_path / "b", rows, encoding="utf-8-sig"))
    assert bom.strokes[0].rally == 1 and bom.strokes[0].stroke == plain.strokes[0].stroke == "short serve"


def test_unseen_label_is_reported_not_fatal(tmp_path):
    path = write_set(tmp_path, [row(rally=1, ball_round=1, frame_num=10, player="A", type="新球種")])
    t = load_shuttleset_set(path)
    assert t.strokes[0].stroke is None and t.report.unseen_labels == {"新球種": 1}
    assert "新球種" in t.report.summary()


def test_unrecognised_csv_is_an_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match="neither"):
        load_annotations(path)
    with pytest.raises(AnnotationError, match="not found"):
        load_annotations(tmp_path / "missing.csv")


# ---------------------------------------------------------------- reference CSV


def test_reference_csv_round_trip(tmp_path):
    strokes = [s for n in (1, 2, 3) for s in load_set(n).strokes]
    for s in strokes[:5]:
        s.split = "train"
    path = write_reference_csv(strokes, tmp_path / "ref.csv")
    back = load_annotations(path)  # sniffed as the reference format
    assert len(back.strokes) == len(strokes)
    for a, b in zip(strokes, back.strokes):
        assert (b.match, b.set, b.frame, b.stroke_id) == (a.match, a.set, a.frame, a.stroke_id)
        assert (b.rally, b.ball_round, b.side, b.zone) == (a.rally, a.ball_round, a.side, a.zone)
        assert (b.type_zh, b.stroke, b.backhand, b.split, b.caption) == (a.type_zh, a.stroke, a.backhand, a.split, a.caption)


def test_reference_csv_english_names_booleans_and_middle_ids(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text(
        "id,upper,type,backhand,relabel_hit_area,split,rally\n"
        "game_one_2_1500,True,serve short,0,8,train,1\n"
        "game_one_2_1530,False,net pop,1,3,train,1\n"
        "game_one_2_1550,1,擋小球,,6,val,1\n"
        "game_one_2_1570,0,未知球種,,9,val,1\n", encoding="utf-8")
    t = load_reference_csv(path)
    a, b, c, d = t.strokes
    assert (a.match, a.set, a.frame) == ("game_one", 2, 1500)
    assert [s.side for s in t.strokes] == ["upper", "bottom", "upper", "bottom"]
    assert (a.stroke, b.stroke, c.stroke) == ("short serve", "lob", "return net")
    assert (a.zone, a.reference_hit_area, c.zone, b.zone) == (5, 8, 5, 3)  # 6, 8: "in the middle"
    assert [s.ball_round for s in t.strokes] == [1, 2, 3, 4]  # from frame order
    assert a.caption == "upper player hits a short serve in the middle"
    assert d.caption is None and t.report.unknown_labels == 1
    assert (a.backhand, b.backhand, c.backhand) == (False, True, None)


def test_reference_csv_bad_values(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("id,upper,type\ng_1_10,maybe,殺球\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"row 1, column 'upper'"):
        load_reference_csv(path)
    path.write_text("id,upper,type\nnoframe,1,殺球\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"row 1, column 'id'"):
        load_reference_csv(path)


# ---------------------------------------------------------------- all of ShuttleSet


@pytest.mark.skipif(not SHUTTLESET.is_dir(), reason="ShuttleSet not present")
def test_every_shuttleset_set_imports():
    files = sorted(SHUTTLESET.glob("*/set*.csv"))
    assert len(files) == 104
    total = unknown = passive = disagree = 0
    fps = set()
    for f in files:
        t = load_annotations(f)
        assert t.court is not None and set(t.players) == {"A", "B"}
        # the positions' vote matches match.csv's starting end + the end-change rules in every set
        assert not t.report.warnings, (f, t.report.warnings)
        total += len(t.strokes)
        unknown += t.report.unknown_labels
        passive += sum(s.type_zh == "過渡切球" for s in t.strokes)
        disagree += t.report.side_disagreements
        fps.add(t.fps)
    assert 36_400 <= total <= 36_600  # README: 36,492 strokes
    assert unknown == 1407 and passive == 1356  # README: 未知球種 1,407; 過度切球 1,356 rows
    assert fps == {25.0, 29.97, 30.0}
    assert disagree / total < 0.01


def test_bad_court_corner_names_homography_row(tmp_path):
    path = write_set(tmp_path, [row(rally=1, ball_round=1, frame_num=10, player="A", type="發短球")])
    h = tmp_path / "homography.csv"
    h.write_text(h.read_text(encoding="utf-8").replace(",459.0,", ",abc,"), encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"homography.csv: row 1, column 'upleft_x': not a number"):
        load_shuttleset_set(path)
