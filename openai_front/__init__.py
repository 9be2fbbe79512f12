"""The OpenAI-compatible HTTP surface (FastAPI): routes, protocol, shaping, dashboard."""

import pydantic

# FastAPI defines some sixty pydantic models for OpenAPI documents when it is imported; built at once they
# hold several MiB of validators the tool uses only if /openapi.json is asked for. Deferred, every model
# (ours too) is built the first time it is used.
pydantic.BaseModel.model_config["defer_build"] = True
