"""Which value each data-dependent setting takes, and where it came from: a flag the user
passed, the plan made from the data (``planning.planner``), or the named dataset's published
default. A flag always wins; the run header and config.json say the source of each."""
from dataclasses import asdict, dataclass

from networks.vnet import DEFAULT_STRIDES, strides_text, total_strides
from planning.planner import Plan, vnet_strides, window_strides

FLAG, PLAN, DATASET = "flag", "plan", "dataset default"


@dataclass(frozen=True)
class PlannedSettings:
    """The resolved settings (``spacing`` mm or None: the folder's own; ``patch_size`` voxels;
    ``strides`` per VNet stage; ``window`` the sliding-window steps (xy, z) in voxels;
    ``intensity`` as ``dataloaders.msd.normalize_intensities`` takes it, None: per-case z-score)
    and ``sources``, {setting: FLAG, PLAN or DATASET}."""
    spacing: tuple | None
    patch_size: tuple
    strides: tuple
    window: tuple
    intensity: dict | None
    sources: dict

    def to_dict(self) -> dict:
        values = asdict(self)
        values["strides"] = [list(stage) for stage in self.strides]
        return values


def resolve_settings(plan: Plan | None, *, dataset_patch, dataset_window, patch_flag=None, strides_flag=None,
                     spacing_flag=None, zscore_flag: bool = False) -> PlannedSettings:
    """The settings of a run: each flag given (``patch_flag``, ``strides_flag``, ``spacing_flag``,
    ``zscore_flag`` for an explicit ``--normalize case``) as it is, else the ``plan``'s (None:
    no plan), else the dataset's (``dataset_patch``, ``dataset_window``, the published
    strides, the folder's own voxel size, per-case z-score). Strides for a patch given by flag
    are planned for that patch."""
    sources = {}

    def pick(name, flag, planned, default):
        value, sources[name] = ((flag, FLAG) if flag is not None else
                                (planned, PLAN) if plan is not None else (default, DATASET))
        return value

    spacing = pick("spacing", tuple(spacing_flag) if spacing_flag else None, plan and plan.spacing, None)
    patch = tuple(pick("patch_size", tuple(patch_flag) if patch_flag else None, plan and plan.patch_size,
                       dataset_patch))
    planned_strides = None
    if plan is not None:  # the plan's strides are for its own patch; a patch by flag gets its own
        planned_strides = plan.strides if sources["patch_size"] == PLAN else vnet_strides(spacing, patch)
    strides = pick("strides", tuple(map(tuple, strides_flag)) if strides_flag else None, planned_strides,
                   DEFAULT_STRIDES)
    planned_window = window_strides(patch) if plan is not None else None
    default_window = (min(dataset_window[0], min(patch[:2])), min(dataset_window[1], patch[2])) if dataset_window \
        else window_strides(patch)
    window = pick("window", None, planned_window, default_window)
    intensity = pick("intensity", {"scheme": "zscore"} if zscore_flag else None, plan and plan.intensity, None)
    return PlannedSettings(spacing=spacing, patch_size=patch, strides=strides, window=tuple(window),
                           intensity=intensity, sources=sources)


def settings_text(settings: PlannedSettings, *, as_stored: bool = False) -> str:
    """One header line: each setting with its source (``as_stored``: h5 values read as stored,
    ``--normalize none``)."""
    s = settings.sources
    spacing = (" x ".join(f"{v:.4g}" for v in settings.spacing) + " mm" if settings.spacing
               else "the cases' own")
    intensity = settings.intensity or {"scheme": "zscore"}
    intensity_text = ("CT: clipped to {lower:.1f}..{upper:.1f}, minus {mean:.1f}, over {std:.1f}".format(**intensity)
                      if intensity["scheme"] == "ct" else "as stored" if as_stored else "z-scored per case")
    return (f"settings: voxel size {spacing} ({s['spacing']}), patch {' x '.join(map(str, settings.patch_size))} "
            f"({s['patch_size']}), VNet strides {strides_text(settings.strides)} ({s['strides']}; total "
            f"{' x '.join(map(str, total_strides(settings.strides)))}), sliding-window steps "
            f"{settings.window[0]}/{settings.window[1]} ({s['window']}), intensities {intensity_text} "
            f"({s['intensity']})")
