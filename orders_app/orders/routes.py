"""Order endpoints: thin HTTP wrappers around ``service``."""

import logging
import uuid
from typing import Any

from flask import current_app, g, request, url_for
from flask.views import MethodView
from flask_smorest.pagination import PaginationParameters
from marshmallow import RAISE
from werkzeug.sansio.response import Response

from ..adapters.limiter import limit
from ..adapters.smorest import Blueprint, Listing
from ..auth.identity import current_viewer
from . import service
from .schemas import (
    IdempotencyHeaderSchema,
    OrderCreateSchema,
    OrderData,
    OrderListQuerySchema,
    OrderSchema,
    OrderStatusChangeSchema,
    encode_cursor,
)

log = logging.getLogger(__name__)

blp = Blueprint("orders", __name__, url_prefix="/orders", description="Placing, reading and changing orders")


@blp.route("/")
class Orders(MethodView):
    decorators = [limit("RATELIMIT_ORDER_CREATE", methods=["POST"])]

    @blp.auth_required()
    @blp.arguments(IdempotencyHeaderSchema, location="headers")
    @blp.arguments(OrderCreateSchema)
    @blp.response(201, OrderSchema, headers={"Location": {"schema": {"type": "string"}}})
    @blp.error(422, "Invalid order, wrong total_price, or an Idempotency-Key reused with another body")
    def post(self, headers: dict[str, Any], data: dict[str, Any]) -> tuple[OrderData, int, dict[str, str]]:
        """Place an order. The server computes total_price."""
        order, created = service.create_order(
            current_viewer(),
            data["items"],
            claimed_total=data.get("total_price"),
            idempotency_key=headers.get("idempotency_key"),
            request_id=g.request_id,
        )
        response_headers = {"Location": url_for("orders.Order", order_id=order["id"])}
        if created:
            log.info("Order %s created", order["id"], extra={"order_id": order["id"]})
        else:
            response_headers["Idempotent-Replayed"] = "true"
        return order, 201, response_headers


@blp.route("/<uuid:order_id>/")
class Order(MethodView):
    @blp.auth_required()
    @blp.etag
    @blp.response(
        200, OrderSchema, headers={"X-Cache": {"schema": {"type": "string", "enum": ["HIT", "MISS"]}}}
    )
    @blp.error(404, "No such order, or not yours")
    def get(self, order_id: uuid.UUID) -> Response:
        """Read an order: from the Redis cache when it is there (X-Cache: HIT)."""
        order, hit = service.get_order(current_viewer(), order_id)
        # Already the API's JSON: answered as it is (the ETag the response schema would give; 304
        # if it matches), without flask-smorest's response machinery, on the API's busiest path.
        blp.set_etag(order)
        response = current_app.json.response(order)
        response.headers["X-Cache"] = "HIT" if hit else "MISS"
        return response

    @blp.auth_required()
    @blp.etag
    @blp.arguments(OrderStatusChangeSchema)
    @blp.response(200, OrderSchema)
    @blp.error(404, "No such order, or not yours")
    @blp.error(409, "Not a legal transition from the current status")
    @blp.error(412, "If-Match does not match the order's current ETag")
    def patch(self, data: dict[str, Any], order_id: uuid.UUID) -> OrderData:
        """Change an order's status. If-Match is optional; when sent it must match."""
        precondition = blp.check_etag if request.if_match else None
        return service.change_status(current_viewer(), order_id, data["status"], precondition)


@blp.route("/user/<int:user_id>/")
class UserOrders(MethodView):
    @blp.auth_required()
    @blp.etag
    @blp.arguments(OrderListQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, OrderSchema(many=True))
    @blp.paginate(page_size=20, max_page_size=100)
    @blp.error(403, "Another user's orders (admins excepted)")
    @blp.error(404, "The user id is not a whole number")
    def get(
        self, args: dict[str, Any], user_id: int, pagination_parameters: PaginationParameters
    ) -> Listing[OrderData]:
        """A user's orders, newest first; pagination in the X-Pagination header.

        Page by number (``page``, at most LIST_MAX_PAGE: deeper is a 422 unless the list is known
        to end before), or follow ``next_cursor`` (``cursor``): as fast at any depth.
        The total is counted up to 1,000 orders; beyond, X-Pagination leaves it (and the last page) out.
        """
        max_page = current_app.config["LIST_MAX_PAGE"]
        after = args.get("cursor")
        page = service.list_orders(
            current_viewer(),
            user_id,
            status=args.get("status"),
            after=after,
            offset=0 if after else pagination_parameters.first_item,
            limit=pagination_parameters.page_size,
            max_page=max_page,
        )
        return Listing(
            items=page.orders,
            total=page.total,
            next_cursor=page.next_after and encode_cursor(*page.next_after),
            by_cursor=after is not None,
            max_page=max_page,
        )
