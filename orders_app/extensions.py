"""Extension singletons, created once here and bound to an app in ``create_app``.

The rate limiter is not among them: each app builds its own (``adapters.limiter``).
"""

from typing import TYPE_CHECKING, ClassVar

import orjson
from flask_cors import CORS
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Table
from sqlalchemy.orm import DeclarativeBase

from .adapters.jwt_manager import JWTManager
from .adapters.redis_client import FlaskRedis
from .adapters.smorest import Api


class Base(DeclarativeBase):
    if TYPE_CHECKING:  # SQLAlchemy types it as any FromClause; every model here maps a table
        __table__: ClassVar[Table]


# Objects stay readable after commit (no reload query); sessions live for one request. JSONB
# columns are written and read with orjson (a page of orders parses 20 of them).
db = SQLAlchemy(
    model_class=Base,
    session_options={"expire_on_commit": False},
    engine_options={
        "json_serializer": lambda data: orjson.dumps(data).decode(),
        "json_deserializer": orjson.loads,
    },
)
migrate = Migrate()
jwt = JWTManager()
cors = CORS()
api = Api()
cache_redis = FlaskRedis("cache_redis", decode_responses=True)
# RQ needs bytes: never a client with decode_responses.
queue_redis = FlaskRedis("queue_redis")
