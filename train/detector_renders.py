"""The stroke detector's render plan: which match is rendered with which seed, size and rallies,
for training, validation and test, and the command that renders it all.

    python -m train.detector_renders --shuttleset ../shared/data/shuttleset --out R [--jobs 2]

writes R/train, R/val and R/test (each in `train.replay`'s layout) and R/plan.json. The plan is
fixed here, not drawn: the three lists share no match and no seed, so validation (every choice
of the recipe) and test (the model card's figures only) are renders never trained on.

The test matches are the ones no earlier detector saw in any role; the matches of two earlier
test lists (looked at while the recipe was being changed) are now training and validation
matches, so nothing of them is reported as held out. Test renders rallies 17-24 (17-22 at
1280x720) of their set 2 with seeds 3300 on: earlier renders of these matches (set 1, seeds
3000-3005; set 2 rallies 1-8 and 9-16, seeds 3100-3105 and 3200-3205) gave the figures of earlier
cards and were looked at.
"""
from __future__ import annotations

import argparse
import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    split: str
    match: str
    seed: int
    size: tuple[int, int]
    rallies: str
    set_no: int = 1


SMALL, LARGE = (640, 360), (1280, 720)

TRAIN = [
    "An_Se_Young_Pornpawee_Chochuwong_TOYOTA_THAILAND_OPEN_2021_QuarterFinals",
    "Anders_ANTONSEN_Jonatan_CHRISTIE Indonesia_Masters_2020_QuarterFinals",
    "Anders_Antonsen_Viktor_Axelsen_HSBC_BWF_WORLD_TOUR_FINALS_2020_Finals",
    "Anthony_Sinisuka_GINTING_Viktor_AXELSEN _Indonesia_Masters_2020_SemiFinals",
    "Anthony_Sinisuka_Ginting_Rasmus_Gemke_YONEX_Thailand_Open_2021_QuarterFinals",
    "CHEN_Long_CHOU_Tien_Chen_World_Tour_Finals_Group_Stage",
    "CHOU_Tien_Chen_Jonatan_CHRISTIE_Indonesia_Open_2019_Quarter-finals",
    "CHOU_Tien_Chen_NG_Ka_Long_Angus_Sudirman_Cup_2019_Group_Stage",
    "Carolina_Marin_An_Se_Young_TOYOTA_THAILAND_OPEN_2021_SemiFinals",
    "Carolina_Marin_Pornpawee_Chochuwong_HSBC_BWF_WORLD_TOUR_FINALS_2020_SemiFinals",
    "Evgeniya_Kosetskaya_Michelle_Li_HSBC_BWF_WORLD_TOUR_FINALS_2020_QuarterFinals",
    "Hans-Kristian_Solberg_Vittinghus_Lee_Cheuk_Yu_TOYOTA_THAILAND_OPEN_2021_QuarterFinals",
    "Kento_MOMOTA_CHOU_Tien_Chen_Fuzhou_Open_2018_Finals",
    "Kento_MOMOTA_CHOU_Tien_Chen_KOREA_OPEN_2019_Final",
    "Kento_MOMOTA_Viktor_AXELSEN_Malaysia_Masters_2020_Finals",
    "NG_Ka_Long_Angus_Jonatan_CHRISTIE_Malaysia_Masters_2020_QuarterFinals",
    "Viktor_Axelsen_Anthony_Sinisuka_Ginting_YONEX_Thailand_Open_2021_SemiFinals",
    "Viktor_Axelsen_Jonatan_Christie_YONEX_Thailand_Open_2021_QuarterFinals",
    "Viktor_Axelsen_Liew_Daren_TOYOTA_THAILAND_OPEN_2021_QuarterFinals",
    "Viktor_Axelsen_Ng_Ka_Long_Angus_YONEX_Thailand_Open_2021_Finals",
    # the first earlier test list
    "Anthony_Sinisuka_GINTING_Anders_ANTONSEN_Indonesia_Masters_2020_Final",
    "Anthony_Sinisuka_Ginting_Lee_Zii_Jia_HSBC_BWF_WORLD_TOUR_FINALS_2020_QuarterFinals",
    "CHOU_Tien_Chen_Anders_ANTONSEN_Fuzhou_Open_2019_Semi-finals",
    "CHOU_Tien_Chen_Jonatan_CHRISTIE_Sudirman_Cup_2019_Quarter-finals",
    "Carolina_Marin_Neslihan_Yigit_TOYOTA_THAILAND_OPEN_2021_QuarterFinals",
    "Carolina_Marin_Supanida_Katethong_YONEX_Thailand_Open_2021_QuarterFinals",
]
VAL = [
    "Ng_Ka_Long_Angus_Lee_Cheuk_Yiu_YONEX_Thailand_Open_2021_QuarterFinals",
    "Pusarla_V._Sindhu_Pornpawee_Chochuwong_HSBC_BWF_WORLD_TOUR_FINALS_2020_QuarterFinals",
    "Viktor_AXELSEN _SHI_Yu_Qi_All_England_Open_2020_QuarterFinals",
    "Viktor_AXELSEN_NG_Ka_Long_Angus_Malaysia_Masters_2020_SemiFinals",
    "Kento_MOMOTA_CHOU_Tien_Chen_Fuzhou_Open_2019_Finals",
    "Mia_Blichfeldt_Busanan_Ongbamrungphan_YONEX_Thailand_Open_2021_QuarterFinals",
    # the second earlier test list
    "Kento_MOMOTA_CHOU_Tien_Chen_Malaysia_Open_2018_QuarterFinals",
    "NG_Ka_Long_Angus_SHI_Yu_Qi_Thailand_Masters_2020_SemiFinals",
    "Ng_Ka_Long_Angus_Kidambi_Srikanth_HSBC_BWF_WORLD_TOUR_FINALS_2020_QuarterFinals",
    "Ratchanok_Intanon_Pusarla_V._Sindhu_TOYOTA_THAILAND_OPEN_2021_QuarterFinals",
    "Viktor_AXELSEN_CHEN_Long_Malaysia_Masters_2020_QuarterFinals",
    "Viktor_Axelsen_Hans-Kristian_Solberg_VIittinghus_TOYOTA_THAILAND_OPEN_2021_Finals",
]
TEST = [
    "An_Se_Young_Ratchanok_Intanon_YONEX_Thailand_Open_2021_QuarterFinals",
    "Anders_Antonsen_Sameer_Verma_TOYOTA_THAILAND_OPEN_2021_QuarterFinals",
    "CHEN_Long_CHOU_Tien_Chen_Denmark_Open_2019_QuarterFinal",
    "Carolina_Marin_An_Se_Young_HSBC_BWF_WORLD_TOUR_FINALS_2020_QuarterFinals",
    "Hans-Kristian_Solberg_Vittinghus_Anders_Antonsen_TOYOTA_THAILAND_OPEN_2021_SemiFinals",
    "Kento_MOMOTA_CHOU_Tien_Chen_Denmark_Open_2018_Finals",
]
SEED_BASE = {"train": 1000, "val": 2000, "test": 3300}
SET_OF = {"train": 1, "val": 1, "test": 2}
FIRST_RALLY = {"train": 1, "val": 1, "test": 17}
EXTRA_VAL = [Item("val", "NG_Ka_Long_Angus_SHI_Yu_Qi_Thailand_Masters_2020_SemiFinals", 508, SMALL, "1-8")]
"""A bright light-blue court that a detector reading absolute grey levels missed entirely."""


def plan() -> list[Item]:
    """Every render of the detector's recipe; every third match of a list at 1280x720."""
    items = []
    for split, matches in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        for k, match in enumerate(matches):
            large = k % 3 == 2
            first = FIRST_RALLY[split]
            rallies = f"{first}-{first + (5 if large else 7)}"
            items.append(Item(split, match, SEED_BASE[split] + k, LARGE if large else SMALL, rallies, SET_OF[split]))
    return items + EXTRA_VAL


def _render(args: tuple[Item, Path, Path]) -> str:
    from train.replay import render_set

    item, shuttleset, out = args
    render_set(shuttleset / item.match / f"set{item.set_no}.csv", _folder(out, item), rallies=item.rallies,
               seed=item.seed, size=item.size)
    return f"{item.split} {item.match} seed {item.seed}"


def render_all(shuttleset: Path, out: Path, jobs: int = 2, splits: tuple[str, ...] = ("train", "val", "test")) -> None:
    """Render the plan's items of `splits` under out/<split>/ (skipping finished ones), write out/plan.json."""
    out.mkdir(parents=True, exist_ok=True)
    items = [i for i in plan() if i.split in splits]
    (out / "plan.json").write_text(json.dumps([asdict(i) for i in plan()], indent=1) + "\n")
    todo = [i for i in items if not (_folder(out, i) / i.match / f"set{i.set_no}.mp4").is_file()]
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        for done in pool.map(_render, [(i, shuttleset, out) for i in todo]):
            log.info("rendered %s", done)


def _folder(out: Path, item: Item) -> Path:
    return out / ("val-extra" if item in EXTRA_VAL else item.split)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.detector_renders", description=__doc__.split("\n\n")[0])
    p.add_argument("--shuttleset", type=Path, required=True, help="ShuttleSet root (one folder per match)")
    p.add_argument("--out", type=Path, required=True, help="output folder: train/, val/, val-extra/, test/")
    p.add_argument("--splits", default="train,val,test", help="which lists to render (default all)")
    p.add_argument("--jobs", type=int, default=2, help="renders at once (default 2)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    render_all(args.shuttleset, args.out, args.jobs, tuple(s.strip() for s in args.splits.split(",")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
