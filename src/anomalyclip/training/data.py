"""The training data as Lightning sees it: two shuffled loaders of sampled items (abnormal,
normal), cycled to the longer, and the test videos for validation."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, DistributedSampler

from anomalyclip.config import RunConfig
from anomalyclip.data.datasets import TestVideos, TrainItems
from anomalyclip.data.run_data import RunData
from anomalyclip.errors import InputError
from anomalyclip.evaluation import video_loader


class FeatureData(L.LightningDataModule):
    def __init__(self, cfg: RunConfig, data: RunData):
        super().__init__()
        self.cfg, self.data = cfg, data
        m = cfg.model
        self.abnormal = TrainItems(data.train_abnormal, data.features, m.feature_dim, m.num_segments, m.seg_length)
        self.normal = TrainItems(data.train_normal, data.features, m.feature_dim, m.num_segments, m.seg_length)
        self.test = TestVideos(data.test, data.features, data.temporal, data.classes, m.feature_dim)
        half = cfg.train.batch_size // 2
        for name, ds in (("abnormal", self.abnormal), ("normal", self.normal)):
            if len(ds) < half:
                raise InputError(
                    f"the {name} training list has {len(ds)} videos, fewer than half a batch ({half}); lower --batch-size"
                )

    def _loader(self, ds: TrainItems) -> DataLoader:
        t = self.cfg.train
        world = self.trainer.world_size if self.trainer is not None else 1
        sampler = DistributedSampler(ds, shuffle=True, seed=t.seed, drop_last=True) if world > 1 else None
        # Workers are started afresh with each pass, seeded from torch's stream: a resumed run's
        # workers then make the draws the uninterrupted run's made (persistent workers would
        # carry their own random state from epoch to epoch, which no checkpoint holds).
        return DataLoader(
            ds,
            batch_size=t.batch_size // 2,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=True,
            num_workers=t.num_workers,
            persistent_workers=False,
        )

    def train_dataloader(self):
        return {"abnormal": self._loader(self.abnormal), "normal": self._loader(self.normal)}

    def val_dataloader(self):
        return video_loader(self.test, self.cfg.train.eval_frames_per_forward, self.cfg.model.frames_per_item)
