"""The model table: the built-in list merged with what the page itself lists."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from sites import lmarena as site


@dataclass
class ModelInfo:
    id: str  # the site's model id
    name: str  # public name, what clients send as `model`
    organization: str
    capabilities: dict[str, bool]
    modality: str
    raw: dict[str, Any]
    from_page: bool = False
    virtual: bool = False  # a name for conversations whose model the site hides (battle mode)
    router: bool = False  # the site's router (`Max`): it picks a model for each prompt
    selectable: bool = True  # a person can pick it on the site


# Battle conversations hide their models: they join the pool under these names, by modality.
BATTLE_MODELS = {"chat": "battle", "image": "battle-image"}


def battle_model_name(modality: str) -> str:
    return BATTLE_MODELS.get(modality, "battle")


_DATE_SUFFIX = re.compile(r"^(.+?)-(\d{8}|\d{4}-\d{2}-\d{2})$")


class ModelRegistry:
    def __init__(self, builtin: list[dict[str, Any]] | None = None) -> None:
        self._by_name: dict[str, ModelInfo] = {}
        self._by_id: dict[str, ModelInfo] = {}
        self.page_updated: float | None = None
        self.created = int(time.time())
        self.explicit_aliases: dict[str, str] = {}  # alias (lower case) -> model name
        self.auto_aliases = True
        self._aliases: dict[str, str] | None = None
        for model in builtin if builtin is not None else site.builtin_models():
            self._add(model, from_page=False)
        for modality, name in BATTLE_MODELS.items():
            output: dict[str, Any] = {"image": {"aspectRatios": ["1:1"]}} if modality == "image" else {"text": True}
            caps = {"inputCapabilities": {"text": True, "image": True}, "outputCapabilities": output}
            self._add({"id": f"battle:{modality}", "publicName": name, "organization": "lmarena-battle",
                       "capabilities": caps}, from_page=False, virtual=True)

    def _add(self, model: dict[str, Any], from_page: bool, virtual: bool = False) -> bool:
        info = ModelInfo(
            id=str(model["id"]),
            name=str(model["publicName"]),
            organization=str(model.get("organization") or "lmarena"),
            capabilities=site.capabilities(model),
            modality=site.modality_of(model),
            raw=model,
            from_page=from_page,
            virtual=virtual,
            router=site.is_router(model),
            selectable=site.user_selectable(model),
        )
        known = self._by_name.get(info.name.lower())
        if known is not None and known.id != info.id and known.selectable and not info.selectable:
            # a second entry under a name already taken, which a person cannot pick: the name stays with
            # the one they can; this one is still known by its id (a captured conversation may name it)
            self._by_id.setdefault(info.id, info)
            return False
        changed = known is None or known.id != info.id or known.raw != model
        if known is not None and known.id != info.id:
            self._by_id.pop(known.id, None)
        self._by_name[info.name.lower()] = info
        self._by_id[info.id] = info
        self._aliases = None
        return changed

    def set_aliases(self, explicit: dict[str, str], auto: bool) -> None:
        self.explicit_aliases = {k.strip().lower(): v.strip() for k, v in explicit.items()}
        self.auto_aliases = auto
        self._aliases = None

    def aliases(self) -> dict[str, str]:
        """alias (lower case) -> model name: the configured ones, and names without a date suffix
        (`claude-opus-4-20250514` → `claude-opus-4`) where that is unambiguous and not a model itself."""
        if self._aliases is None:
            found: dict[str, str | None] = {}
            if self.auto_aliases:
                for info in self._by_name.values():
                    m = _DATE_SUFFIX.match(info.name)
                    if m and m.group(1).lower() not in self._by_name:
                        key = m.group(1).lower()
                        found[key] = None if key in found else info.name
            aliases = {k: v for k, v in found.items() if v is not None}
            aliases.update(self.explicit_aliases)
            self._aliases = aliases
        return self._aliases

    def merge_page_models(self, models: list[dict[str, Any]]) -> int:
        """Models the page lists win over the built-in table (ids change with deployments)."""
        changed = sum(1 for m in models if self._add(m, from_page=True))
        if models:
            self.page_updated = time.time()
        return changed

    def resolve(self, name: str) -> ModelInfo | None:
        key = name.strip().lower()
        found = self._by_name.get(key) or self._by_id.get(name.strip())
        if found is None and key in self.aliases():
            found = self._by_name.get(self.aliases()[key].lower())
        return found

    def by_id(self, model_id: str | None) -> ModelInfo | None:
        return self._by_id.get(model_id) if model_id else None

    def all(self) -> list[ModelInfo]:
        return sorted(self._by_name.values(), key=lambda m: m.name)
